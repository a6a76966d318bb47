"""Event changes through the daemon to the `sns` sink, over HTTP against moto, received by a
subscribed SQS queue."""
from __future__ import annotations

import asyncio
import json

import aioboto3
import pytest

from livewatch.daemon import Daemon
from livewatch.errors import ConfigError
from livewatch.events import EventSettings
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalOptions, LocalSink
from livewatch.sinks.sns import SnsOptions, SnsSink
from livewatch.testing import ListSource
from test_webhook import PLAN, ScriptClassifier, segments


async def test_changes_reach_a_subscribed_queue_with_filterable_attributes(tmp_path, aws_env):
    session = aioboto3.Session()
    async with session.client("sns") as sns, session.client("sqs") as sqs:
        topic = (await sns.create_topic(Name="livewatch-events"))["TopicArn"]
        queue = (await sqs.create_queue(QueueName="events"))["QueueUrl"]
        queue_arn = (await sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"]))[
            "Attributes"]["QueueArn"]
        await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                            Attributes={"FilterPolicy": json.dumps({"label": ["walk"]})})
        local = LocalSink(LocalOptions(path=tmp_path / "d.db"))
        local.event_settings = EventSettings(update_seconds=3600)
        daemon = Daemon([ListSource(segments(PLAN))], ScriptClassifier(),
                        [local, SnsSink(SnsOptions(topic_arn=topic), instance="sns")],
                        DaemonSettings(health_listen=""))
        await asyncio.wait_for(daemon.run(handle_signals=False), 60)
        messages = []
        while True:
            got = (await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)).get("Messages", [])
            if not got:
                break
            messages += [json.loads(json.loads(m["Body"])["Message"]) for m in got]
    assert messages, "no change reached the queue"
    assert {m["event"]["label"] for m in messages} == {"walk"}  # the filter policy on `label`
    assert messages[-1]["type"] == "closed" and messages[-1]["revision"] == 13


async def test_a_missing_topic_is_a_config_error(aws_env):
    sink = SnsSink(SnsOptions(topic_arn="arn:aws:sns:us-east-1:123456789012:nope"))
    with pytest.raises(ConfigError, match="does not exist"):
        await sink.start()
    await sink.close()
