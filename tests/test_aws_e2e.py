"""End to end on the AWS path, as a user runs it: `livewatch run` as a subprocess against a moto
server over real HTTP (S3 → SQS notifications as moto delivers them).

- `s3-events` → in-process `i3d` (reading the s3:// segments through the source) → `dynamodb`,
  configured with a TOML file: one item per segment, redelivery, a poison segment, a table that
  goes away mid-run.
- `s3-events` → `sagemaker` (the real serving stack, `livewatch.testing.serving`) → `dynamodb` on
  dynalite and `sns` on moto, configured with the very ``LIVEWATCH_…`` variables the fleet stack
  passes (`templates_gen.daemon_env`): the DynamoDB emulator is stopped and restarted mid-run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from livewatch.testing.media import HlsWriter
from livewatch.testing.models import TEST_CLASSES
from livewatch.testing.serving import ENDPOINT_NAME
from templates_gen import results
from templates_gen.daemon_env import daemon_environment

pytestmark = pytest.mark.slow

LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))
BUCKET, TABLE = "livestream", "livewatch-detections"


def make_table(ddb) -> None:
    """The detections table exactly as the `results` stack declares it (keys, index, billing)."""
    ddb.create_table(**results.create_table_args(TABLE))


def items(ddb) -> dict[str, dict]:
    """S3Path -> detection item, as plain strings/numbers."""
    try:
        found = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {i["S3Path"]["S"]: {k: next(iter(v.values())) for k, v in i.items()} for i in found
            if "Kind" not in i}  # event items (and a stream's clock mark) are not detections


def queue_counts(sqs, queue) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def messages_kept(sqs, queue, expected: int) -> int:
    """Messages in the queue, visible or not. Moto computes the two counts one after the other,
    so a message whose visibility runs out in between is in neither: a short count is read
    again (a deleted message stays deleted)."""
    for _ in range(5):
        kept = sum(queue_counts(sqs, queue))
        if kept >= expected:
            return kept
        time.sleep(0.05)
    return kept


class Daemon:
    def __init__(self, workdir: Path, config: Path, env: dict[str, str], config_flag: bool = True):
        self.log_path = workdir / "daemon.log"
        command = [LIVEWATCH, "run", *(["--config", str(config)] if config_flag else [])]
        self.proc = subprocess.Popen(command, cwd=workdir,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float = 120.0, what: str = "", interval: float = 0.3) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log()[-5000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()[-5000:]}"
            time.sleep(interval)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def test_s3_segments_become_one_item_each_and_nothing_is_lost(tmp_path, aws_env, tiny_i3d_dir):
    s3, sqs, ddb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    queue = sqs.create_queue(QueueName="segments")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {
            "Key": {"FilterRules": [{"Name": "prefix", "Value": "live/"}, {"Name": "suffix", "Value": ".ts"}]}}}]})
    make_table(ddb)
    config = tmp_path / "livewatch.toml"
    config.write_text(f"""
[daemon]
workers = 1
sink_retries = 1
shutdown_timeout = 30

[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"
top_k = 3

[[sources]]
type = "s3-events"
queue_url = "{queue}"
wait_seconds = 1
visibility_timeout = 30
release_visibility = 1

[[sinks]]
type = "dynamodb"
table = "{TABLE}"
""")
    env = {**aws_env, "PYTHONUNBUFFERED": "1"}

    cams = {name: HlsWriter(tmp_path / "media" / name, name="seg", seconds=2.0, size=(320, 180))
            for name in ("cam1", "cam 2")}
    uploaded = []

    def upload(cam: str) -> str:
        path = cams[cam].write_segment()
        key = f"live/{cam}/{path.name}"
        s3.upload_file(str(path), BUCKET, key)
        uploaded.append(f"s3://{BUCKET}/{key}")
        return uploaded[-1]

    upload("cam1")  # waiting in the queue before the daemon starts
    daemon = Daemon(tmp_path, config, env)
    try:
        upload("cam1")
        upload("cam 2")
        s3.put_object(Bucket=BUCKET, Key="live/cam1/poison.ts", Body=os.urandom(40_000))
        poison = f"s3://{BUCKET}/live/cam1/poison.ts"
        daemon.wait_for(lambda: len(items(ddb)) == 4 and queue_counts(sqs, queue) == (0, 0),
                        what="4 items and an empty queue")
        found = items(ddb)
        assert set(found) == {*uploaded, poison}
        for uri in uploaded:
            item = found[uri]
            assert {"S3Path", "Predicted", "Probability", "DateCreatedUTC", "TopK", "Model"} <= item.keys()
            assert "Error" not in item and item["Stream"] in ("cam1", "cam 2")
            assert item["SegmentKey"] == uri  # the segment's identity, whatever is known of its time
            assert item["When"] == item["DateCreatedUTC"]  # no playlists here: no time known
        assert found[poison]["Error"] and "Predicted" not in found[poison]
        timeline = ddb.query(TableName=TABLE, IndexName="Timeline", KeyConditionExpression="#s = :s",
                             ExpressionAttributeNames={"#s": "Stream"},
                             ExpressionAttributeValues={":s": {"S": "cam1"}})["Items"]
        assert sorted(i["S3Path"]["S"] for i in timeline) == sorted(
            u for u in found if found[u]["Stream"] == "cam1")
        assert [i["When"]["S"] for i in timeline] == sorted(i["When"]["S"] for i in timeline)
        poison_written = found[poison]["DateCreatedUTC"]

        # Redelivery of the same notification: the item is rewritten, not duplicated.
        before = found[uploaded[0]]["DateCreatedUTC"]
        key = uploaded[0].removeprefix(f"s3://{BUCKET}/")
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": key.replace("/", "%2F").replace(" ", "+")}}}]}))
        daemon.wait_for(lambda: items(ddb)[uploaded[0]]["DateCreatedUTC"] != before
                        and queue_counts(sqs, queue) == (0, 0), what="the redelivered segment")
        assert len(items(ddb)) == 4
        assert items(ddb)[poison]["DateCreatedUTC"] == poison_written  # not classified again

        # The table goes away mid-run: the segment is released, its message stays in the queue
        # until the table is back, and then it is written and deleted.
        ddb.delete_table(TableName=TABLE)
        late = upload("cam 2")
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert messages_kept(sqs, queue, 1) == 1, "deleted before its item existed"
            time.sleep(0.3)
        assert "a sink failed" in daemon.log()
        make_table(ddb)
        daemon.wait_for(lambda: set(items(ddb)) == {late} and queue_counts(sqs, queue) == (0, 0),
                        what="the late segment once the table is back")
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log()[-5000:]
    # The poison segment was classified once: one error detection, its message deleted then.
    assert daemon.log().count("live/cam1/poison.ts: ") == 1, daemon.log()[-5000:]


def notified_queue(s3, sqs) -> str:
    queue = sqs.create_queue(QueueName="segments")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return queue


def test_the_fleet_configuration_with_sagemaker_survives_a_dynamodb_outage(
        tmp_path, aws_env, sagemaker_endpoint, dynalite):
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue = notified_queue(s3, sqs)
    dynalite.start()
    ddb = boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url)
    make_table(ddb)
    topic = boto3.client("sns").create_topic(Name="livewatch-events")["TopicArn"]
    s3.create_bucket(Bucket="artifacts")  # the storage stack's: the endpoint writes thumbnails there
    fleet = dict(daemon_environment(queue_url=queue, endpoint_name=ENDPOINT_NAME, table_name=TABLE,
                                     topic_arn=topic, artifact_bucket="artifacts", workers="1",
                                     region="us-east-1"))
    env = {**aws_env, **fleet, "PYTHONUNBUFFERED": "1",
           # the emulators, the way AWS tools are pointed at endpoints, per service
           "AWS_ENDPOINT_URL_DYNAMODB": dynalite.endpoint_url,
           "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": sagemaker_endpoint.endpoint_url,
           "AWS_ENDPOINT_URL_SAGEMAKER": sagemaker_endpoint.endpoint_url,
           # shorter waits than production's, for the test
           "LIVEWATCH_SOURCES__0__WAIT_SECONDS": "1", "LIVEWATCH_SOURCES__0__RELEASE_VISIBILITY": "1",
           "LIVEWATCH_DAEMON__SINK_RETRY_MAX_SECONDS": "1", "LIVEWATCH_SINKS__0__MAX_ATTEMPTS": "1"}
    cam = HlsWriter(tmp_path / "media" / "cam1", name="seg", seconds=2.0, size=(320, 180))

    def upload() -> str:
        path = cam.write_segment()
        s3.upload_file(str(path), BUCKET, f"live/cam1/{path.name}")
        return f"s3://{BUCKET}/live/cam1/{path.name}"

    first = upload()
    sagemaker_endpoint.requests.clear()
    daemon = Daemon(tmp_path, tmp_path / "no-such-file-so-env-only.toml", env, config_flag=False)
    try:
        daemon.wait_for(lambda: set(items(ddb)) == {first} and queue_counts(sqs, queue) == (0, 0),
                        what="the first segment's item")
        item = items(ddb)[first]
        assert item["Predicted"] in TEST_CLASSES and item["Model"] == "tiny-i3d" and "Error" not in item
        assert float(item["Probability"]) > 0 and item["Stream"] == "cam1"
        assert sagemaker_endpoint.requests == [ENDPOINT_NAME]  # classified by the endpoint
        # the endpoint wrote each window's thumbnail under the artifact bucket's prefix
        thumbnails = [w["M"]["Thumbnail"]["S"] for w in item["Windows"]]
        assert thumbnails and all(t.startswith("s3://artifacts/thumbnails/") for t in thumbnails)
        for uri in thumbnails:
            jpeg = s3.get_object(Bucket="artifacts", Key=uri.removeprefix("s3://artifacts/"))
            assert jpeg["Body"].read()[:2] == b"\xff\xd8"  # a JPEG

        # DynamoDB goes away. By default (daemon.sink_retries unset) the daemon holds the
        # classified segment and retries its write; the other waits in the queue: nothing is
        # deleted, nothing is classified again, no message is redelivered.
        dynalite.stop()
        sagemaker_endpoint.requests.clear()
        late = [upload(), upload()]
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert messages_kept(sqs, queue, 2) == 2, "a message was deleted before its item existed"
            time.sleep(0.3)
        assert "(the segment is held; new ones wait)" in daemon.log()
        assert "not acknowledged" not in daemon.log()
        dynalite.start()  # back, empty, on the same port
        make_table(ddb)
        daemon.wait_for(lambda: set(items(ddb)) == set(late) and queue_counts(sqs, queue) == (0, 0),
                        what="the segments written once DynamoDB is back")
        assert sagemaker_endpoint.requests == [ENDPOINT_NAME] * 2  # each classified once
    finally:
        rc = daemon.stop()
        dynalite.start()
    assert rc == 0, daemon.log()[-5000:]


def test_an_aws_outage_mid_run_loses_nothing_and_writes_each_segment_once(tmp_path, aws_env, random_i3d_dir):
    """The daemon reaches AWS (moto) through a TCP proxy that is killed mid-run and brought back:
    every connection cut, then refused, then served again by the same emulator with its state,
    as a real outage looks from the daemon. It lasts longer than botocore's own retries, and
    starts while a segment is in work (received, not yet deleted; the full-size model takes about
    a second). Segments uploaded before, during and after it each end as exactly one item, none
    of them an error, and the queue ends empty."""
    from urllib.parse import urlsplit

    from livewatch.testing.proxy import TcpProxy

    s3, sqs, ddb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    queue = notified_queue(s3, sqs)
    make_table(ddb)
    moto = urlsplit(aws_env["AWS_ENDPOINT_URL"])
    proxy = TcpProxy((moto.hostname, moto.port)).start()
    config = tmp_path / "livewatch.toml"
    config.write_text(f"""
[daemon]
workers = 1
sink_retries = 2

[classifier]
type = "i3d"
model = "{random_i3d_dir}"

[[sources]]
type = "s3-events"
queue_url = "{queue.replace(aws_env["AWS_ENDPOINT_URL"], proxy.url)}"
wait_seconds = 1
visibility_timeout = 8
release_visibility = 1
retry_max_seconds = 1
connect_timeout = 1
read_timeout = 5

[[sinks]]
type = "dynamodb"
table = "{TABLE}"
connect_timeout = 1
read_timeout = 5
""")
    env = {**aws_env, "AWS_ENDPOINT_URL": proxy.url, "PYTHONUNBUFFERED": "1"}
    cam = HlsWriter(tmp_path / "media" / "cam1", name="seg", seconds=2.0, size=(320, 180))
    uploaded: list[str] = []

    def upload() -> None:  # the encoder writes to S3 directly: the outage is the daemon's
        path = cam.write_segment()
        s3.upload_file(str(path), BUCKET, f"live/cam1/{path.name}")
        uploaded.append(f"s3://{BUCKET}/live/cam1/{path.name}")

    upload()
    daemon = Daemon(tmp_path, config, env)
    try:
        upload()
        daemon.wait_for(lambda: len(items(ddb)) == 2, what="the items from before the outage")
        upload()
        in_work = uploaded[-1]
        # In work: its message received (in flight) and its item not written yet. The full-size
        # model takes about a second, so a 0.1 s poll of the emulator (not through the proxy)
        # sees it; the outage starts right then.
        daemon.wait_for(lambda: queue_counts(sqs, queue)[1] == 1 and len(items(ddb)) == 2,
                        interval=0.05, what="the third segment in work")
        proxy.stop()
        upload()
        upload()
        # The segment in work is released (its read, or its write past sink_retries, fails past
        # botocore's own retries), as the README says, and the daemon lives on.
        daemon.wait_for(lambda: f"segment {in_work}: not acknowledged" in daemon.log(), timeout=90,
                        what="the segment in work released")
        assert daemon.proc.poll() is None, daemon.log()[-5000:]
        assert in_work not in items(ddb)
        proxy.start()  # back, same port, same state
        upload()
        daemon.wait_for(lambda: set(items(ddb)) == set(uploaded) and queue_counts(sqs, queue) == (0, 0),
                        timeout=180, what="every segment's item and an empty queue")
    finally:
        rc = daemon.stop()
        proxy.stop()
    assert rc == 0, daemon.log()[-5000:]
    found = items(ddb)
    assert len(found) == len(uploaded) == 6  # one item per segment (the key is the segment)
    assert all("Error" not in item and item["Predicted"] for item in found.values()), \
        "an outage must not turn a segment into an error detection"
