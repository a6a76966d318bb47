"""The daemon's configuration in the fleet stack: one place for every ``LIVEWATCH_…`` variable.

The task definition passes these to ``livewatch run`` (see `livewatch.settings`: nested keys use
``__``, list items their index). If a plugin's option is renamed, change it here only; the
template tests check the task definition against this table.
"""
from __future__ import annotations

from .common import import_value
from .model import THUMBNAIL_PREFIX

#: Environment variable -> value; values in braces are filled from the stacks' outputs.
DAEMON_ENVIRONMENT: dict[str, str] = {
    "LIVEWATCH_SOURCES__0__TYPE": "s3-events",
    "LIVEWATCH_SOURCES__0__QUEUE_URL": "{queue_url}",
    "LIVEWATCH_CLASSIFIER__TYPE": "sagemaker",
    "LIVEWATCH_CLASSIFIER__ENDPOINT_NAME": "{endpoint_name}",
    # The endpoint writes each window's JPEG to the artifact bucket (the model stack's grant).
    "LIVEWATCH_CLASSIFIER__THUMBNAILS": "true",
    "LIVEWATCH_CLASSIFIER__THUMBNAILS_BUCKET": "{artifact_bucket}",
    "LIVEWATCH_CLASSIFIER__THUMBNAILS_PREFIX": THUMBNAIL_PREFIX,
    "LIVEWATCH_SINKS__0__TYPE": "dynamodb",
    "LIVEWATCH_SINKS__0__TABLE": "{table_name}",
    # Event changes (opened, updated, closed) to the results stack's topic.
    "LIVEWATCH_SINKS__1__TYPE": "sns",
    "LIVEWATCH_SINKS__1__TOPIC_ARN": "{topic_arn}",
    "LIVEWATCH_DAEMON__WORKERS": "{workers}",
    # Below the container's StopTimeout (120 s, Fargate's most), so in-flight segments finish.
    "LIVEWATCH_DAEMON__SHUTDOWN_TIMEOUT": "90",
    # The AWS SDKs read the region from these.
    "AWS_REGION": "{region}",
    "AWS_DEFAULT_REGION": "{region}",
}

#: Placeholders filled from another stack's outputs unless the caller passes them.
IMPORTED = {"artifact_bucket": ("storage", "ArtifactBucketName")}

#: Seconds ECS waits after SIGTERM before SIGKILL (Fargate allows at most 120).
STOP_TIMEOUT = 120


def daemon_environment(**values) -> list[tuple[str, object]]:
    """(name, value) pairs with the ``{placeholders}`` replaced by `values` (strings or intrinsics)."""
    values = {**{k: import_value(*where) for k, where in IMPORTED.items()}, **values}
    pairs = []
    for key, template in DAEMON_ENVIRONMENT.items():
        if template.startswith("{") and template.endswith("}"):
            pairs.append((key, values[template[1:-1]]))
        else:
            pairs.append((key, template))
    return pairs
