"""The `sagemaker` classifier against the real serving stack: multi-model-server running the
sagemaker-mxnet-inference handler on a model.tar.gz packaged from the tiny random I3D and the
repository's model/code, reached through a local InvokeEndpoint front (see
`livewatch.testing.serving`); the serving code reads the segments from a moto S3 over HTTP.

The label comes from the model: each answer is compared with the in-process `i3d` classifier on
the same segment. Nothing is patched: throttling and a missing endpoint are what the front answers.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import pytest

from livewatch.contract import Segment
from livewatch.delivery import classify_segment
from livewatch.errors import ConfigError, SegmentError, TransientError
from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
from livewatch.model.sagemaker_classifier import SageMakerClassifier, SageMakerOptions
from livewatch.testing.media import write_video
from livewatch.testing.serving import ENDPOINT_NAME, EndpointFront

pytestmark = pytest.mark.slow

ENDPOINT = ENDPOINT_NAME
BUCKET = "segments"


@pytest.fixture
def front(sagemaker_endpoint, aws_env):
    sagemaker_endpoint.throttle(0)
    sagemaker_endpoint.requests.clear()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return sagemaker_endpoint


def upload(path: Path, key: str) -> Segment:
    boto3.client("s3").upload_file(str(path), BUCKET, key)
    return Segment(uri=f"s3://{BUCKET}/{key}", stream="cam1", open=lambda: open(path, "rb"))


def classifier(front: EndpointFront, **options) -> SageMakerClassifier:
    return SageMakerClassifier(SageMakerOptions(**{
        "endpoint_name": ENDPOINT, "retry_base_seconds": 0.05,
        "endpoint_urls": {"sagemaker-runtime": front.endpoint_url, "sagemaker": front.endpoint_url},
        **options}))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("videos")
    # 1 s and 3 s: one window of the tiny model (8 frames every 8th), and two ("cover")
    return [write_video(root / f"seg_{n}.ts", seconds=1.0 + 2 * n, size=(320, 180), gop_seconds=1.0)
            for n in range(2)]


async def test_labels_come_from_the_served_model(front, videos, tiny_i3d_dir):
    segments = [upload(v, f"live/cam1/{v.name}") for v in videos]
    local = I3DClassifier(I3DOptions(model=str(tiny_i3d_dir), top_k=5))
    remote = classifier(front, top_k=5)
    await local.start()
    await remote.start()
    try:
        for segment in segments:
            got, want = await remote.classify(segment), await local.classify(segment)
            assert got.ok and got.model.name == "tiny-i3d"
            assert got.label == want.label and got.frames == want.frames
            assert [x.label for x in got.top_k] == [x.label for x in want.top_k]
            assert got.probability == pytest.approx(want.probability, abs=1e-4)
            assert [(w.start, w.end, w.frames, w.label) for w in got.windows] == [
                (w.start, w.end, w.frames, w.label) for w in want.windows]
            assert got.uri == segment.uri and got.infer_ms > 0
    finally:
        await remote.close()
        await local.close()
    assert front.requests == [ENDPOINT, ENDPOINT]


async def test_throttling_and_5xx_are_retried_then_released(front, videos):
    segment = upload(videos[0], "live/cam1/a.ts")
    sm = classifier(front, retries=3)
    await sm.start()
    try:
        front.throttle(2)  # two 429s, then the model answers
        detection = await sm.classify(segment)
        assert detection.ok and len(front.requests) == 3
        front.requests.clear()
        front.unavailable(1)  # a 5xx is retried too
        assert (await sm.classify(segment)).ok and len(front.requests) == 2
        front.requests.clear()
        front.throttle(100)
        with pytest.raises(TransientError, match="Rate exceeded.*4 attempts"):
            await sm.classify(segment)
        assert len(front.requests) == 4
    finally:
        await sm.close()


async def test_an_invocation_that_times_out_is_retried_then_released(front, videos):
    segment = upload(videos[0], "live/cam1/slow.ts")
    warm = classifier(front)
    await warm.start()
    try:  # how long the served model takes here, so the timeout below is well above it
        started = time.monotonic()
        assert (await warm.classify(segment)).ok
        took = time.monotonic() - started
    finally:
        await warm.close()
    timeout = 1.0 + 3 * took
    sm = classifier(front, retries=1, invoke_timeout=timeout)
    await sm.start()
    try:
        front.requests.clear()
        front.slow(1, timeout + 2)  # the first answer comes after the timeout: retried, answered
        detection = await sm.classify(segment)
        assert detection.ok and len(front.requests) == 2
        front.requests.clear()
        front.slow(2, timeout + 2)  # every attempt times out: released (TransientError)
        with pytest.raises(TransientError, match="(?i)timeout.*2 attempts"):
            await sm.classify(segment)
        assert len(front.requests) == 2
    finally:
        front.slow(0, 0)
        await sm.close()


async def test_a_model_error_is_an_error_detection(front, tmp_path):
    poison = tmp_path / "poison.ts"
    poison.write_bytes(os.urandom(30_000))
    segment = upload(poison, "live/cam1/poison.ts")
    sm = classifier(front)
    await sm.start()
    try:
        with pytest.raises(SegmentError, match="failed on this segment"):
            await sm.classify(segment)
        detection = await classify_segment(sm, segment, timeout=60)  # as the daemon calls it
        # the serving code's own words (inference.py decodes with the daemon's video module)
        assert "failed on this segment: not a video" in detection.error
        assert "Traceback" not in detection.error
        assert detection.label is None
    finally:
        await sm.close()
    assert front.requests == [ENDPOINT, ENDPOINT]  # a model error is not retried


async def test_the_model_failing_on_valid_input_is_transient(front, videos):
    """A 500 from the container (the model ran out of memory, its runtime crashed) is not the
    segment's fault: a TransientError (the daemon retries, then releases), never an error
    detection; the same segment is classified once the model works again."""
    segment = upload(videos[0], "live/cam1/oom.ts")
    sm = classifier(front)
    await sm.start()
    try:
        front.fail(1, 424, "ModelError", 'Received server error (500) from primary with message '
                   '"[CUDA] out of memory\nTraceback (most recent call last): ..."')
        with pytest.raises(TransientError, match="failed .*out of memory"):
            await classify_segment(sm, segment, timeout=60)  # as the daemon calls it
        assert (await sm.classify(segment)).ok
    finally:
        await sm.close()
    assert front.requests == [ENDPOINT, ENDPOINT]  # the daemon retries, not the classifier


async def test_a_missing_endpoint_is_a_clear_error(front, videos):
    sm = classifier(front, endpoint_name="no-such-endpoint")
    with pytest.raises(ConfigError, match="no SageMaker endpoint 'no-such-endpoint'"):
        await sm.start()
    await sm.close()
    segment = upload(videos[0], "live/cam1/a.ts")
    sm = classifier(front, endpoint_name="no-such-endpoint", check_endpoint=False)
    await sm.start()  # gone mid-run: nothing is lost, the segment comes again
    try:
        with pytest.raises(TransientError, match="not found"):
            await sm.classify(segment)
    finally:
        await sm.close()


async def test_only_s3_segments(front, videos):
    sm = classifier(front)
    await sm.start()
    try:
        with pytest.raises(SegmentError, match="not an s3:// URI"):
            await sm.classify(Segment(uri=str(videos[0]), stream="x", open=lambda: open(videos[0], "rb")))
    finally:
        await sm.close()
    assert front.requests == []


def test_the_model_server_answers_ping_and_invocations_directly(front, videos):
    """The container's own routes, as SageMaker's health check and the runtime reach them."""
    import json
    import urllib.request

    with urllib.request.urlopen(front.model_server.url + "/ping", timeout=10) as response:
        assert response.status == 200
    upload(videos[1], "live/cam1/direct.ts")
    request = urllib.request.Request(
        front.model_server.url + "/invocations", method="POST",
        data=json.dumps({"S3_VIDEO_PATH": f"s3://{BUCKET}/live/cam1/direct.ts",
                         "MODEL_MAX_FRAMES": 32}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert response.status == 200
    assert answer["label"] and 0 < answer["probability"] <= 1


async def test_the_endpoint_writes_a_thumbnail_per_window_that_the_ui_serves(front, videos, tiny_i3d_dir,
                                                                              aws_env, tmp_path):
    """thumbnails = true: the endpoint writes each window's middle frame, as the in-process
    classifier makes it, under the prefix; the detection names them, the dynamodb sink's item keeps
    them, and `livewatch ui --dynamodb` serves them from S3. Off (the default), nothing is written;
    a bucket the endpoint cannot write to costs the thumbnails, never the classification."""
    import io
    from urllib.parse import urlencode

    import numpy as np
    from PIL import Image

    from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
    from test_dynamodb_sink import make_table
    from test_ui_command import ui_server
    from test_ui_dynamodb import get

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="artifacts")
    segment = upload(videos[1], "live/cam1/thumbs.ts")  # 3 s: two windows
    local = I3DClassifier(I3DOptions(model=str(tiny_i3d_dir)))
    remote = classifier(front, thumbnails=True, thumbnails_bucket="artifacts")
    await local.start()
    await remote.start()
    try:
        got, want = await remote.classify(segment), await local.classify(segment)
    finally:
        await remote.close()
        await local.close()
    keys = [f"thumbnails/{BUCKET}/live/cam1/thumbs.ts/{n}.jpg" for n in range(2)]
    assert got.ok and [w.thumbnail_uri for w in got.windows] == [f"s3://artifacts/{k}" for k in keys]
    listed = s3.list_objects_v2(Bucket="artifacts", Prefix="thumbnails/")["Contents"]
    assert sorted(o["Key"] for o in listed) == keys
    jpegs = [s3.get_object(Bucket="artifacts", Key=k)["Body"].read() for k in keys]
    for jpeg, window in zip(jpegs, want.windows):
        image = np.asarray(Image.open(io.BytesIO(jpeg)), np.float32)
        expected = np.asarray(Image.open(io.BytesIO(window.thumbnail)), np.float32)
        assert image.shape == expected.shape == (128, 171, 3)  # the model's resize
        assert np.abs(image - expected).mean() < 2  # the same middle frame
    assert "thumbnail_uri" in got.model_dump_json()

    table = make_table(boto3.client("dynamodb"))
    sink = DynamoDBSink(DynamoDBOptions(table=table))
    await sink.start()
    try:
        await sink.write(got)
    finally:
        await sink.close()
    [item] = [i for i in boto3.client("dynamodb").scan(TableName=table)["Items"]
              if "Kind" not in i]  # the segment's item; the sink also keeps its events
    assert [w["M"]["Thumbnail"]["S"] for w in item["Windows"]["L"]] == [f"s3://artifacts/{k}" for k in keys]
    with ui_server(["--dynamodb", table], tmp_path, {**os.environ, **aws_env}) as base:
        for n, jpeg in enumerate(jpegs):
            assert get(f"{base}/thumbnail?" + urlencode({"uri": segment.uri, "n": n})) == (
                200, "image/jpeg", jpeg)

    off = upload(videos[1], "live/cam1/off.ts")
    for options in ({}, {"thumbnails": False, "thumbnails_bucket": "artifacts"}):
        sm = classifier(front, **options)
        await sm.start()
        try:
            detection = await sm.classify(off)
        finally:
            await sm.close()
        assert detection.ok and [w.thumbnail_uri for w in detection.windows] == [None, None]
    assert len(s3.list_objects_v2(Bucket="artifacts", Prefix="thumbnails/")["Contents"]) == 2

    broken = classifier(front, thumbnails=True, thumbnails_bucket="no-such-bucket")
    await broken.start()
    try:
        detection = await broken.classify(off)
    finally:
        await broken.close()
    assert detection.ok and detection.label == got.label
    assert [w.thumbnail_uri for w in detection.windows] == [None, None]
    assert any("thumbnails not written to s3://no-such-bucket/thumbnails/" in n and "NoSuchBucket" in n
               for n in detection.notes), detection.notes


def test_thumbnails_need_a_bucket():
    with pytest.raises(ValueError, match="thumbnails = true needs thumbnails_bucket"):
        SageMakerOptions(endpoint_name=ENDPOINT, thumbnails=True)
    assert SageMakerOptions(endpoint_name=ENDPOINT).thumbnails is False  # off by default
