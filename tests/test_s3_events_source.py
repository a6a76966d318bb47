"""The `s3-events` source: message parsing on real-shaped JSON, then the source against a moto
server over real HTTP (S3 → SQS notifications as moto delivers them)."""
from __future__ import annotations

import asyncio
import logging
import json
from datetime import datetime, timezone

import boto3
import pytest

from livewatch.contract import Segment
from livewatch.errors import ConfigError, SegmentError
from livewatch.sources.s3_events import S3EventsOptions, S3EventsSource
from livewatch.sources.s3_messages import NotAnS3Event, matches, parse_body, stream_of
from livewatch.sources.s3_playlists import PlaylistIndex

BUCKET = "livestream"

# What moto 5 sends (S3 sends the same shape; it writes a space as "+", moto also "/" as "%2F").
S3_EVENT = {"Records": [{
    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
    "eventTime": "2026-11-24T19:23:52.001Z", "eventName": "ObjectCreated:Put",
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "segments",
           "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
           "object": {"key": "live%2Fcam+1%2Fseg_00001.ts", "size": 3, "eTag": "900150983cd2"}}}]}
TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-24T19:23:51.979Z",
              "Bucket": BUCKET}

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T19:00:00.000Z
#EXTINF:6.0,
seg_00041.ts
#EXTINF:6.0,
seg_00042.ts
"""


def record(key: str, event: str = "ObjectCreated:Put", bucket: str = BUCKET) -> dict:
    return {**S3_EVENT["Records"][0], "eventName": event,
            "s3": {**S3_EVENT["Records"][0]["s3"], "bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}


# -- parsing -------------------------------------------------------------------------------------

def test_object_created_keys_are_decoded_as_s3_encodes_them():
    parsed = parse_body(json.dumps(S3_EVENT))
    (rec,) = parsed.records
    assert (rec.bucket, rec.key, rec.size) == (BUCKET, "live/cam 1/seg_00001.ts", 3)
    assert rec.uri == f"s3://{BUCKET}/live/cam 1/seg_00001.ts"
    assert stream_of(rec.key) == "cam 1" and stream_of("seg.ts") == "-"
    assert parse_body(json.dumps({"Records": [record("a/b%2Bc/x%25y.ts")]})).records[0].key == "a/b+c/x%y.ts"


def test_sns_wrapped_test_event_and_other_events():
    sns = {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
           "Message": json.dumps(S3_EVENT), "Timestamp": "2026-11-24T19:23:52.100Z"}
    assert parse_body(json.dumps(sns)).records[0].key == "live/cam 1/seg_00001.ts"
    assert parse_body(json.dumps(TEST_EVENT)).test_event
    mixed = parse_body(json.dumps({"Records": [record("a/1.ts"), record("a/2.ts", "ObjectRemoved:Delete"),
                                               {"eventName": "ObjectCreated:Put"}]}))
    assert [r.key for r in mixed.records] == ["a/1.ts"]
    assert mixed.ignored == ["ObjectRemoved:Delete", "malformed record"]
    for body in ("not json", "[]", '{"hello": 1}'):
        with pytest.raises(NotAnS3Event):
            parse_body(body)


def test_filters_and_playlists():
    assert matches("live/cam1/a.ts", [".ts"], []) and not matches("live/cam1/a.m3u8", [".ts"], [])
    assert matches("live/a.ts", [".ts"], ["live/"]) and not matches("vod/a.ts", [".ts"], ["live/"])
    index = PlaylistIndex()
    assert index.update(BUCKET, "live/cam1/index.m3u8", PLAYLIST) == 2
    entry = index.lookup(BUCKET, "live/cam1/seg_00042.ts")
    assert entry.sequence == 42 and entry.duration == 6.0
    assert entry.start == datetime(2026, 11, 24, 19, 0, 6, tzinfo=timezone.utc)
    assert index.lookup(BUCKET, "live/cam2/seg_00042.ts") is None
    assert index.lookup(BUCKET, "live/cam1/seg_00043.ts") is None  # not guessed
    assert not entry.last  # a live playlist: no segment is the stream's last
    index.update(BUCKET, "live/cam1/index.m3u8", PLAYLIST + "#EXT-X-ENDLIST\n")
    assert [index.lookup(BUCKET, f"live/cam1/seg_0004{n}.ts").last for n in (1, 2)] == [False, True]


# -- against moto --------------------------------------------------------------------------------

@pytest.fixture
def aws(aws_env):
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="segments")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return s3, sqs, queue


def counts(sqs, queue) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


class Running:
    """The source's run() as a task, its segments in a queue."""

    def __init__(self, source: S3EventsSource):
        self.source, self.segments = source, asyncio.Queue()

    async def __aenter__(self):
        await self.source.start()
        self.task = asyncio.create_task(self.source.run(self.segments.put))
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.source.close()

    async def next(self, timeout: float = 10.0) -> Segment:
        return await asyncio.wait_for(self.segments.get(), timeout)


def source(queue: str, **options) -> S3EventsSource:
    return S3EventsSource(S3EventsOptions(**{"queue_url": queue, "wait_seconds": 1, **options}))


async def eventually(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_uploads_become_segments_ack_deletes_release_redelivers(aws):
    s3, sqs, queue = aws
    keys = ["live/cam 1/seg_00001.ts", "live/cam2/seg_00001.ts", "live/cam2/seg_00002.ts"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    s3.put_object(Bucket=BUCKET, Key="live/cam2/notes.txt", Body=b"not a segment")
    async with Running(source(queue, release_visibility=1)) as run:
        got = [await run.next() for _ in keys]
        assert sorted(s.uri for s in got) == sorted(f"s3://{BUCKET}/{k}" for k in keys)
        assert sorted(s.stream for s in got) == ["cam 1", "cam2", "cam2"]
        first = next(s for s in got if s.stream == "cam 1")
        data = await asyncio.to_thread(lambda: first.open().read())  # from a thread, as classifiers do
        assert data == b"live/cam 1/seg_00001.ts"
        for segment in got[:2]:
            await run.source.ack(segment)
        await run.source.release(got[2])
        again = await run.next()  # back after release_visibility
        assert again.uri == got[2].uri
        await run.source.ack(again)
        assert run.segments.empty()  # the test event and notes.txt were deleted, not emitted
        await eventually(lambda: counts(sqs, queue) == (0, 0))


async def test_a_message_with_several_records_is_deleted_after_the_last_ack(aws):
    s3, sqs, queue = aws
    for n in (1, 2):
        s3.put_object(Bucket=BUCKET, Key=f"live/cam1/seg_{n}.ts", Body=b"x")
    sqs.purge_queue(QueueUrl=queue)
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
        {"Records": [record("live%2Fcam1%2Fseg_1.ts"), record("live%2Fcam1%2Fseg_2.ts")]}))
    async with Running(source(queue)) as run:
        a, b = await run.next(), await run.next()
        await run.source.ack(a)
        assert counts(sqs, queue) == (0, 1)  # still in work
        await run.source.ack(b)
        assert counts(sqs, queue) == (0, 0)


async def test_heartbeat_keeps_a_slow_segment_hidden(aws):
    s3, sqs, queue = aws
    s3.put_object(Bucket=BUCKET, Key="live/cam1/seg_1.ts", Body=b"x")
    async with Running(source(queue, visibility_timeout=2, heartbeat_seconds=0.5)) as run:
        segment = await run.next()
        received = asyncio.get_running_loop().time()
        # Past twice the visibility timeout the message is still in flight and was never
        # delivered again: only the heartbeat can have kept it hidden. Checked all along.
        while asyncio.get_running_loop().time() < received + 4:
            assert await asyncio.to_thread(counts, sqs, queue) == (0, 1), "visible again while in work"
            assert run.segments.empty(), "delivered again while in work"
            await asyncio.sleep(0.2)
        await run.source.ack(segment)
        await eventually(lambda: counts(sqs, queue) == (0, 0))


async def test_playlists_give_sequence_and_time_and_are_not_classified(aws):
    s3, sqs, queue = aws
    s3.put_object(Bucket=BUCKET, Key="live/cam1/index.m3u8", Body=PLAYLIST.encode())
    await asyncio.sleep(0.2)
    s3.put_object(Bucket=BUCKET, Key="live/cam1/seg_00042.ts", Body=b"x")
    async with Running(source(queue)) as run:
        segment = await run.next()
        assert segment.uri.endswith("seg_00042.ts") and segment.sequence == 42 and segment.duration == 6.0
        assert segment.start == datetime(2026, 11, 24, 19, 0, 6, tzinfo=timezone.utc)
        await run.source.ack(segment)
        await eventually(lambda: counts(sqs, queue) == (0, 0))


async def test_a_segment_an_ended_playlist_lists_last_is_the_streams_last(aws):
    s3, sqs, queue = aws
    s3.put_object(Bucket=BUCKET, Key="live/cam1/index.m3u8", Body=(PLAYLIST + "#EXT-X-ENDLIST\n").encode())
    await asyncio.sleep(0.2)
    for n in (41, 42):
        s3.put_object(Bucket=BUCKET, Key=f"live/cam1/seg_000{n}.ts", Body=b"x")
    async with Running(source(queue)) as run:
        got = sorted([await run.next(), await run.next()], key=lambda s: s.sequence)
        assert [(s.sequence, s.last) for s in got] == [(41, False), (42, True)]
        for segment in got:
            await run.source.ack(segment)


async def test_a_segment_gone_from_s3_is_a_segment_error(aws):
    s3, sqs, queue = aws
    s3.put_object(Bucket=BUCKET, Key="live/cam1/seg_1.ts", Body=b"x" * 100)
    s3.delete_object(Bucket=BUCKET, Key="live/cam1/seg_1.ts")
    s3.put_object(Bucket=BUCKET, Key="live/cam1/seg_2.ts", Body=b"x" * 100)
    async with Running(source(queue, max_segment_bytes=10)) as run:
        gone, big = sorted([await run.next(), await run.next()], key=lambda s: s.uri)
        with pytest.raises(SegmentError, match="segment no longer in S3"):
            await asyncio.to_thread(gone.open)
        with pytest.raises(SegmentError, match="max_segment_bytes"):
            await asyncio.to_thread(big.open)


async def test_a_missing_queue_is_a_config_error(aws_env):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="gone")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    src = source(url)
    with pytest.raises(ConfigError, match="no SQS queue"):
        await src.start()
    await src.close()


async def test_the_source_survives_the_emulator_going_away(aws, moto_server, caplog):
    _, sqs, queue = aws
    caplog.set_level(logging.INFO, logger="livewatch.sources.s3_events")
    async with Running(source(queue, retry_max_seconds=1, max_attempts=1, connect_timeout=1)) as run:
        moto_server.stop()
        try:  # several failed polls, each logged, and the source still running
            await eventually(lambda: caplog.text.count("receiving from") >= 2, timeout=30)
            assert not run.task.done()
        finally:
            moto_server.start()
        sqs = boto3.client("sqs")
        assert sqs.create_queue(QueueName="segments")["QueueUrl"] == queue  # empty again, same URL
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record("live%2Fcam1%2Fa.ts")]}))
        segment = await run.next(timeout=15)
        assert segment.uri == f"s3://{BUCKET}/live/cam1/a.ts"
        assert "SQS answers again" in caplog.text
        await run.source.ack(segment)
        assert counts(sqs, queue) == (0, 0)


async def test_messages_that_are_not_s3_events_are_deleted_and_polling_goes_on(aws):
    _, sqs, queue = aws
    sqs.purge_queue(QueueUrl=queue)
    sqs.send_message(QueueUrl=queue, MessageBody="not json at all")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record("live%2Fcam1%2Fb.ts")]}))
    async with Running(source(queue)) as run:
        segment = await run.next()
        assert segment.uri == f"s3://{BUCKET}/live/cam1/b.ts"
        await run.source.ack(segment)
        await eventually(lambda: counts(sqs, queue) == (0, 0))
        assert not run.task.done()


async def test_a_segment_that_keeps_failing_ends_in_the_dead_letter_queue(aws):
    _, sqs, queue = aws
    dlq = sqs.create_queue(QueueName="segments-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})
    sqs.purge_queue(QueueUrl=queue)
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record("live%2Fcam1%2Fc.ts")]}))
    async with Running(source(queue, release_visibility=0)) as run:
        for _ in range(2):  # released twice (a transient failure each time)...
            await run.source.release(await run.next())
        await eventually(lambda: sum(counts(sqs, dlq)) == 1)  # ...then the queue gives it to its DLQ
        assert run.segments.empty()  # and not a third time to us
    assert counts(sqs, queue) == (0, 0) and sum(counts(sqs, dlq)) == 1


async def test_events_through_sns_are_unwrapped(aws_env):
    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="via-sns")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="segments")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)  # not raw: SNS's envelope
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=BUCKET, Key="live/cam 3/seg_1.ts", Body=b"x")
    async with Running(source(queue)) as run:
        segment = await run.next()
        assert (segment.uri, segment.stream) == (f"s3://{BUCKET}/live/cam 3/seg_1.ts", "cam 3")
        await run.source.ack(segment)
        await eventually(lambda: counts(sqs, queue) == (0, 0))
