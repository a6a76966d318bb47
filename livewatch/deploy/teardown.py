"""`livewatch destroy`: stop the channel, empty the buckets, delete the stacks in reverse order.

Safe to re-run: a stack, channel or bucket that is already gone is skipped. The buckets are
emptied (every version) just before their stack is deleted, when nothing writes to them any more.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from livewatch.errors import LivewatchError

from .session import aws_errors, error_code
from .stacks import Stacks

CHANNEL_STOPPING = {"STARTING", "RUNNING", "RECOVERING", "STOPPING", "UPDATING"}


def destroy(session, project: str, keys: tuple[str, ...], stacks: Stacks,
            echo: Callable[[str], None]) -> None:
    from templates_gen import STACKS

    repository = _fleet_repository(stacks, project) if "fleet" in keys else None
    for spec in reversed(STACKS):
        if spec.key not in keys:
            continue
        name = spec.stack_name(project)
        if spec.key == "livestream":
            for channel in stack_resources(stacks, name, "AWS::MediaLive::Channel"):
                stop_channel(session.client("medialive"), channel, echo,
                             poll=stacks.poll, timeout=stacks.timeout)
        if spec.key == "storage":
            s3 = session.client("s3")
            for bucket in stack_resources(stacks, name, "AWS::S3::Bucket"):
                empty_bucket(s3, bucket, echo)
        stacks.delete(name)
    if repository:
        note_kept_repository(session.client("ecr"), repository, echo)


def _fleet_repository(stacks: Stacks, project: str) -> str:
    """The ECR repository the fleet runs from (its ImageRepository; the default if the stack is gone)."""
    stack = stacks.describe(f"{project}-fleet") or {}
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    return values.get("ImageRepository", "livewatch")


def note_kept_repository(ecr, name: str, echo: Callable[[str], None]) -> None:
    """The ECR repository is deploy's, not a stack's (see `image`): it stays; say how to remove it."""
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            images = ecr.list_images(repositoryName=name)["imageIds"]
        except ClientError as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                return
            raise
    echo(f"kept: ECR repository {name} ({len(images)} image tags); to remove it with its images: "
         f"aws ecr delete-repository --repository-name {name} --force --region {ecr.meta.region_name}")


def stack_resources(stacks: Stacks, name: str, resource_type: str) -> list[str]:
    """Physical ids of the stack's resources of one type ([] if the stack is gone)."""
    if stacks.describe(name) is None:
        return []
    with aws_errors():
        pages = stacks.cfn.get_paginator("list_stack_resources").paginate(StackName=name)
        return [r["PhysicalResourceId"] for page in pages for r in page["StackResourceSummaries"]
                if r["ResourceType"] == resource_type and r.get("PhysicalResourceId")
                and r.get("ResourceStatus") != "DELETE_COMPLETE"]


def stop_channel(medialive, channel_id: str, echo, *, poll: float, timeout: float) -> None:
    """Stop a MediaLive channel and wait until it is idle (a running channel cannot be deleted)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    stopped = False
    with aws_errors():
        while True:
            try:
                state = medialive.describe_channel(ChannelId=channel_id)["State"]
            except ClientError as exc:
                if error_code(exc) in ("NotFoundException", "NotFound"):
                    return
                raise
            if state not in CHANNEL_STOPPING:
                if stopped:
                    echo(f"channel {channel_id}: {state}")
                return
            if state in ("STARTING", "RUNNING", "RECOVERING") and not stopped:
                echo(f"channel {channel_id}: {state}, stopping it")
                medialive.stop_channel(ChannelId=channel_id)
                stopped = True
            if time.monotonic() > deadline:
                raise LivewatchError(f"channel {channel_id}: still {state} after {timeout / 60:.0f} min")
            time.sleep(poll)


def empty_bucket(s3, bucket: str, echo) -> None:
    """Delete every object version and delete marker (a bucket must be empty to be deleted)."""
    from botocore.exceptions import ClientError

    deleted = 0
    with aws_errors():
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                         for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                for start in range(0, len(batch), 1000):  # DeleteObjects takes at most 1000
                    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch[start:start + 1000],
                                                                        "Quiet": True})
                    if response.get("Errors"):
                        first = response["Errors"][0]
                        raise LivewatchError(
                            f"s3://{bucket}: cannot delete {first['Key']}: {first['Message']}")
                    deleted += len(batch[start:start + 1000])
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucket":
                return
            raise
    echo(f"s3://{bucket}: emptied ({deleted} object versions deleted)")
