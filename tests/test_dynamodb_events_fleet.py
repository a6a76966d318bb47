"""Two `livewatch run` daemons (subprocesses) on one SQS queue (moto over HTTP), `s3-events` →
in-process `i3d` (the tiny test model) → `dynamodb` on one table: they compete for one stream's
segments, each recomputing its events from what the table holds, and the event items they leave
are one set: `events.derive` over every stored detection's windows, nothing more."""
from __future__ import annotations

import json
import random
import urllib.request

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from livewatch.events import EventSettings, derive, windows_of
from livewatch.sinks.dynamodb_read import to_detection
from livewatch.testing.aws import free_port
from livewatch.testing.daemon_process import RunningDaemon
from livewatch.testing.media import HlsWriter
from test_aws_e2e import BUCKET, TABLE, make_table, queue_counts
from test_dynamodb_events import event_items

pytestmark = pytest.mark.slow

SEGMENTS = 14
SETTINGS = EventSettings(min_probability=0.0, max_gap=3.0, min_duration=1.0)


def record(key: str) -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait(predicate, daemons: list[RunningDaemon], what: str, timeout: float = 240.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        for d in daemons:
            assert d.proc.poll() is None, f"a daemon exited early:\n{d.log()[-5000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n---\n".join(
            d.log()[-3000:] for d in daemons)
        time.sleep(0.3)


def test_two_daemons_on_one_queue_build_one_set_of_events(tmp_path, aws_env, tiny_i3d_dir):
    s3, sqs, ddb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    queue = sqs.create_queue(QueueName="segments")["QueueUrl"]
    s3.create_bucket(Bucket=BUCKET)
    make_table(ddb)
    # One stream, every segment and its playlist on S3 before the daemons see any of it. Each
    # message carries the playlist's record with the segment's, so whichever daemon takes it
    # knows the segment's program date-time (each daemon learns playlists only from its messages).
    cam = HlsWriter(tmp_path / "media" / "cam1", name="seg", seconds=4.0, size=(160, 96))
    keys = []
    for _ in range(SEGMENTS):
        path = cam.write_segment()
        keys.append(f"live/cam1/{path.name}")
        s3.upload_file(str(path), BUCKET, keys[-1])
    s3.upload_file(str(cam.playlist), BUCKET, "live/cam1/seg.m3u8")

    daemons, ports = [], []
    for n in range(2):
        workdir = tmp_path / f"daemon{n}"
        workdir.mkdir()
        ports.append(free_port())
        config = workdir / "livewatch.toml"
        config.write_text(f"""
[daemon]
workers = 1
health_listen = "127.0.0.1:{ports[-1]}"

[ui]
enabled = false

[events]
min_probability = {SETTINGS.min_probability}
max_gap = {SETTINGS.max_gap}
min_duration = {SETTINGS.min_duration}

[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"
windows = "cover"

[[sources]]
type = "s3-events"
queue_url = "{queue}"
wait_seconds = 1
max_messages = 1
visibility_timeout = 30
release_visibility = 1

[[sinks]]
type = "dynamodb"
table = "{TABLE}"
batch_wait_ms = 0

[[sinks]]
type = "stdout"
format = "json"
""")
        daemons.append(RunningDaemon(workdir, config))
    late = [keys[4], keys[9]]  # missing at first: three events, which they then merge
    try:
        wait(lambda: all(ready(p) for p in ports), daemons, "both daemons ready")
        first = [k for k in keys if k not in late]
        random.Random(7).shuffle(first)  # out of order: the queue is no FIFO either
        send(sqs, queue, first)
        wait(lambda: drained(sqs, queue, daemons, len(first)), daemons, "the first segments")
        before = check_events(ddb, SEGMENTS - 2)
        assert len(before[0]) == 3, before
        send(sqs, queue, late)
        wait(lambda: drained(sqs, queue, daemons, SEGMENTS), daemons, "the late segments")
    finally:
        codes = [d.stop() for d in daemons]
    assert codes == [0, 0], [d.log()[-3000:] for d in daemons]
    done = [{line["uri"] for line in d.lines()} for d in daemons]
    assert all(done), "one daemon took every segment: no fleet"
    assert done[0] | done[1] == {f"s3://{BUCKET}/{k}" for k in keys}
    current, retired = check_events(ddb, SEGMENTS)
    assert len(current) == 1 and current[0]["id"] == before[0][0]["id"]
    merged = {r["id"]: r for r in retired}  # also those an out-of-order arrival merged before
    assert [merged[e["id"]]["merged_into"] for e in before[0][1:]] == [current[0]["id"]] * 2
    assert [merged[e["id"]]["revision"] for e in before[0][1:]] == [e["revision"] + 1 for e in before[0][1:]]
    assert all(r["state"] == "closed" for r in retired)


def send(sqs, queue: str, keys: list[str]) -> None:
    for key in keys:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            {"Records": [record("live/cam1/seg.m3u8"), record(key)]}))


def drained(sqs, queue: str, daemons: list[RunningDaemon], count: int) -> bool:
    """The queue is empty (each message deleted once its segment and events were written)."""
    return sum(len(d.lines()) for d in daemons) >= count and queue_counts(sqs, queue) == (0, 0)


def check_events(ddb, count: int) -> tuple[list[dict], list[dict]]:
    """The event items equal `derive` over every stored detection's windows; returns them."""
    items = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    detections = [to_detection({k: TypeDeserializer().deserialize(v) for k, v in i.items()})
                  for i in items if "Kind" not in i]
    assert len(detections) == count and all(d.start and d.windows for d in detections)
    want = [e.to_dict() for e in derive([w for d in detections for w in windows_of(d)], SETTINGS)]
    current, retired = event_items(ddb, TABLE)
    assert want and sorted(current, key=json.dumps) == sorted(want, key=json.dumps), (current, want)
    return current, retired
