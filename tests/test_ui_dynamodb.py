"""``livewatch ui --dynamodb TABLE``: the page's API over the results table the dynamodb sink
writes, read-only, against moto over HTTP (a table made from the results stack's declaration)."""
import io
import json
import os
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlencode

import boto3
import numpy as np
import pytest
from PIL import Image

from livewatch.plugins import registry
from livewatch.capabilities import table_store
from livewatch.components import DetectionQuery
from livewatch.errors import ConfigError
from livewatch.model.thumbnails import window_thumbnails
from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
from livewatch.testing.daemon_process import LIVEWATCH
from livewatch.testing.front import AwsFront

from test_dynamodb_sink import make_table
from test_ui_api import detection
from test_ui_command import ui_server


async def test_ui_over_the_results_table(aws_env, moto_server, tmp_path):
    table = make_table(boto3.client("dynamodb", endpoint_url=moto_server.endpoint_url))
    sink = DynamoDBSink(DynamoDBOptions(table=table))
    await sink.start()
    try:
        for n in range(3):
            await sink.write(detection(n))
        await sink.write(detection(3, error="cannot decode: no video stream"))
        await sink.write(detection(0, stream="door", label="open"))
    finally:
        await sink.close()

    reader = table_store(registry(), table, [])  # what `livewatch ui --dynamodb` reads through
    try:
        got = await reader.query(DetectionQuery(stream="cam", limit=2))
        assert [d.sequence for d in got] == [2, 3]
        assert [d.sequence for d in await reader.query(DetectionQuery(errors_only=True))] == [3]
        first = (await reader.query(DetectionQuery(stream="cam")))[0]
        assert (first.label, first.top_k[0].label, len(first.windows)) == ("walk", "walk", 2)
        rows = await reader.query_windows(DetectionQuery(stream="cam"))
        assert [(r["sequence"], r["n"], r["label"]) for r in rows][:3] == [
            (0, 0, "walk"), (0, 1, "run"), (1, 0, "walk")]
    finally:
        await reader.close()

    with ui_server(["--dynamodb", table], tmp_path, {**os.environ, **aws_env}) as base:
        streams = api_json(f"{base}/streams")["streams"]
        assert [(s["stream"], s["counts"]["detections"], s["health"]) for s in streams] == [
            ("cam", 4, "error"), ("door", 1, "ok")]
        errors = api_json(f"{base}/errors?stream=cam")["errors"]
        assert [e["error"] for e in errors] == ["cannot decode: no video stream"]
        windows = api_json(f"{base}/windows?stream=door")["windows"]
        assert [w["label"] for w in windows] == ["open", "run"]

    # the same reading serves `livewatch detections` where the dynamodb sink is configured
    (tmp_path / "livewatch.toml").write_text(f'[[sinks]]\ntype = "dynamodb"\ntable = "{table}"\n')
    listed = subprocess.run([LIVEWATCH, "detections", "--stream", "cam", "--format", "json"],
                            cwd=tmp_path, env={**os.environ, **aws_env}, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["sequence"] for line in listed.stdout.splitlines()] == [0, 1, 2, 3]
    assert "Unclosed" not in listed.stderr


async def test_ui_serves_the_thumbnails_the_items_name_from_s3(aws_env, moto_server, tmp_path):
    """Items the dynamodb sink wrote name each window's JPEG in S3 (where the sagemaker
    classifier's endpoint writes them, see test_sagemaker_classifier); `livewatch ui --dynamodb`
    serves it by segment and window, from S3 over HTTP, and nothing that is not such a JPEG."""
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint_url)
    s3.create_bucket(Bucket="artifacts")
    frames = np.zeros((2, 8, 64, 96, 3), np.uint8)
    frames[0, 4], frames[1, 4] = (200, 30, 30), (30, 200, 30)  # red, then green middle frames
    jpegs = window_thumbnails(frames)
    prefix = "s3://artifacts/thumbnails/"
    for n, jpeg in enumerate(jpegs):
        s3.put_object(Bucket="artifacts", Key=f"thumbnails/cam/seg0.ts/{n}.jpg", Body=jpeg)
    s3.put_object(Bucket="artifacts", Key="thumbnails/cam/seg1.ts/0.jpg", Body=b"<html>not a JPEG")
    with_thumbs, odd, without = detection(0), detection(1), detection(2)
    for n, window in enumerate(with_thumbs.windows):
        window.thumbnail_uri = f"{prefix}cam/seg0.ts/{n}.jpg"
    odd.windows[0].thumbnail_uri = f"{prefix}cam/seg1.ts/0.jpg"  # not a JPEG
    odd.windows[1].thumbnail_uri = f"{prefix}cam/seg1.ts/1.jpg"  # never written
    table = make_table(boto3.client("dynamodb", endpoint_url=moto_server.endpoint_url))
    sink = DynamoDBSink(DynamoDBOptions(table=table))
    await sink.start()
    try:
        for d in (with_thumbs, odd, without):
            await sink.write(d)
    finally:
        await sink.close()

    reader = table_store(registry(), table, [])  # what `livewatch ui --dynamodb` reads through
    try:
        assert [await reader.thumbnail(with_thumbs.uri, n) for n in (0, 1, 2)] == [*jpegs, None]
        assert [await reader.thumbnail(odd.uri, n) for n in (0, 1)] == [None, None]
        assert await reader.thumbnail(without.uri, 0) is None
        assert await reader.thumbnail("/live/cam/never.ts", 0) is None
    finally:
        await reader.close()
    # the page names the segment's stream: the item is read by its key, the table is not scanned
    with AwsFront(moto_server.endpoint_url) as front:
        keyed = DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=front.endpoint_url))
        try:
            assert [await keyed.thumbnail(with_thumbs.uri, n, stream=with_thumbs.stream)
                    for n in (1, 0)] == [jpegs[1], jpegs[0]]
            assert await keyed.thumbnail(with_thumbs.uri, 0, stream="") == jpegs[0]  # remembered
            assert await keyed.thumbnail(without.uri, 0, stream="elsewhere") is None
        finally:
            await keyed.close()
    calls = [target.rpartition(".")[2] for target in front.targets]
    assert calls.count("GetItem") == 2 and "Scan" not in calls, calls
    missing = table_store(registry(), "no-such-table", [])  # the page answers 404
    try:
        with pytest.raises(ConfigError, match="cannot read DynamoDB table 'no-such-table'"):
            await missing.thumbnail(with_thumbs.uri, 0)
    finally:
        await missing.close()

    with ui_server(["--dynamodb", table], tmp_path, {**os.environ, **aws_env}) as base:
        status, content_type, body = get(f"{base}/thumbnail?" + urlencode({"uri": with_thumbs.uri, "n": 1}))
        assert (status, content_type, body) == (200, "image/jpeg", jpegs[1])
        assert get(f"{base}/thumbnail?" + urlencode(  # as the page asks, with the stream
            {"uri": with_thumbs.uri, "n": 0, "stream": with_thumbs.stream}))[2] == jpegs[0]
        image = np.asarray(Image.open(io.BytesIO(body)))
        assert image.shape == (64, 96, 3) and image.mean(axis=(0, 1)).argmax() == 1  # green
        for uri, n in ((odd.uri, 0), (odd.uri, 1), (without.uri, 0), (with_thumbs.uri, 2)):
            assert get(f"{base}/thumbnail?" + urlencode({"uri": uri, "n": n}))[0] == 404, (uri, n)


def api_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()
