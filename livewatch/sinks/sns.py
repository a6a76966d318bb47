"""The `sns` sink: event changes published to an SNS topic (the AWS deployment's notifications).

Each message is the change as JSON (`livewatch.notify.EventChange.to_dict()`); its message
attributes `label`, `stream` and `type` let subscriptions filter (SNS filter policies) without
reading the body. SNS delivers at least once, as livewatch does: subscribers dedupe on the
event's `id` and `revision`. Throttling, 5xx and lost connections are retried with backoff
(`livewatch.retry`); what still fails stays pending in the event store for the next try.
"""
from __future__ import annotations

import contextlib
import json
import logging

from pydantic import Field

from ..aws_clients import AwsOptions, describe, error_code, is_transient, open_client
from ..components import Sink
from ..contract import Detection
from ..errors import ConfigError, TransientError
from ..hookspecs import hookimpl
from ..retry import retry

log = logging.getLogger(__name__)


class SnsOptions(AwsOptions):
    topic_arn: str = Field(description="the SNS topic's ARN (the results stack's EventsTopicArn)")
    labels: list[str] = Field([], description="only events of these labels (empty: all)")
    changes: list[str] = Field(["opened", "updated", "closed"], description="which event changes to publish")
    retries: int = Field(5, ge=0, description="retries of a publish that failed transiently, with backoff")


class SnsSink(Sink):
    """Publishes event changes to an SNS topic, with label/stream attributes for filter policies."""

    name = "sns"
    Options = SnsOptions

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._client = await open_client(self._stack, "sns", self.options)
        try:
            await self._client.get_topic_attributes(TopicArn=self.options.topic_arn)
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(f"sns {self.instance!r}: {describe(exc)}") from exc
            code = error_code(exc)
            raise ConfigError(f"sink {self.instance!r}: SNS topic {self.options.topic_arn!r} "
                              f"{'does not exist' if code == 'NotFound' else 'cannot be read'} "
                              f"({describe(exc)})") from None

    async def close(self) -> None:
        if getattr(self, "_stack", None) is not None:
            await self._stack.aclose()
            self._stack = None

    async def write(self, detection: Detection) -> None:
        """Detections are not published (event changes are)."""

    async def notify(self, change) -> None:
        event = change.event
        if change.type not in self.options.changes or (
                self.options.labels and event["label"] not in self.options.labels):
            return
        attributes = {name: {"DataType": "String", "StringValue": str(value)} for name, value in
                      (("label", event["label"]), ("stream", event["stream"]), ("type", change.type))}

        async def publish() -> None:
            try:
                await self._client.publish(TopicArn=self.options.topic_arn,
                                           Message=json.dumps(change.to_dict()),
                                           MessageAttributes=attributes)
            except Exception as exc:
                if is_transient(exc):
                    raise TransientError(describe(exc)) from exc
                raise

        await retry(publish, what=f"sns {self.instance!r}: publish {change.id}:{change.revision}",
                    attempts=self.options.retries + 1, first=0.2, longest=10.0, stop=self.stopping,
                    logger=log)


@hookimpl
def register_sinks(register):
    register(SnsSink)
