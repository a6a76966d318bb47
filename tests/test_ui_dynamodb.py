"""``livewatch ui --dynamodb TABLE``: the page's API over the results table the dynamodb sink
writes, read-only, against moto over HTTP (a table made from the results stack's declaration)."""
import json
import os
import subprocess
import time

import boto3

from livewatch.plugins import registry
from livewatch.capabilities import table_store
from livewatch.components import DetectionQuery
from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
from livewatch.testing.aws import free_port
from livewatch.testing.daemon_process import LIVEWATCH

from test_dynamodb_sink import make_table
from test_ui_api import detection
from test_ui_command import get_json


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

    port = free_port()
    proc = subprocess.Popen([LIVEWATCH, "ui", "--dynamodb", table, "--listen", f"127.0.0.1:{port}"],
                            cwd=tmp_path, env={**os.environ, **aws_env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/ui/api"
        streams = get_json(f"{base}/streams", time.monotonic() + 60, proc)["streams"]
        assert [(s["stream"], s["counts"]["detections"], s["health"]) for s in streams] == [
            ("cam", 4, "error"), ("door", 1, "ok")]
        errors = get_json(f"{base}/errors?stream=cam", time.monotonic() + 10, proc)["errors"]
        assert [e["error"] for e in errors] == ["cannot decode: no video stream"]
        windows = get_json(f"{base}/windows?stream=door", time.monotonic() + 10, proc)["windows"]
        assert [w["label"] for w in windows] == ["open", "run"]
    finally:
        proc.terminate()
        proc.wait(30)

    # the same reading serves `livewatch detections` where the dynamodb sink is configured
    (tmp_path / "livewatch.toml").write_text(f'[[sinks]]\ntype = "dynamodb"\ntable = "{table}"\n')
    listed = subprocess.run([LIVEWATCH, "detections", "--stream", "cam", "--format", "json"],
                            cwd=tmp_path, env={**os.environ, **aws_env}, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["sequence"] for line in listed.stdout.splitlines()] == [0, 1, 2, 3]
    assert "Unclosed" not in listed.stderr
