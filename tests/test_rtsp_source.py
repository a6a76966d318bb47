"""The built-in `rtsp` source against a real RTSP server on loopback (GStreamer's, started by the
test; `make setup` installs it): segments arrive; the server killed for 15 s and restarted is
reconnected to within 5 s of its return, the outage recorded; kill -9 of the daemon loses no
spooled segment. 1 s segments, so time is compressed."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

import av
import pydantic
import pytest

from livewatch.errors import ConfigError, SegmentError
from livewatch.metrics import Metrics
from livewatch.sources.rtsp import RtspOptions, RtspSource
from livewatch.testing.daemon_process import RunningDaemon, store_rows, wait_for, local_and_stdout_sinks
from livewatch.testing.rtsp_server import RtspServer

FAST = dict(segment_seconds=1.0, stall_seconds=3.0, open_timeout=3.0)  # backoff_max: its default


@contextlib.asynccontextmanager
async def running(url: str, tmp_path, ack: bool = True, **options):
    source = RtspSource(RtspOptions(url=url, spool=tmp_path / "spool", **{**FAST, **options}), instance="door")
    source.metrics = Metrics()
    await source.start()
    got, arrived = [], asyncio.Event()

    async def emit(segment):
        got.append(segment)
        arrived.set()
        if ack:
            await source.ack(segment)

    async def until(predicate, timeout=60):
        async with asyncio.timeout(timeout):
            while not predicate(got):
                arrived.clear()
                await arrived.wait()

    task = asyncio.create_task(source.run(emit))
    try:
        yield source, got, until, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()


def frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_segments_arrive_cut_at_keyframes_without_reencoding(tmp_path):
    with RtspServer(tmp_path) as server:
        async with running(server.url, tmp_path) as (source, got, until, _):
            await until(lambda s: len(s) >= 4)
    assert [s.sequence for s in got[:4]] == [0, 1, 2, 3]
    assert {s.stream for s in got} == {"cam"}
    for segment in got[:3]:
        assert 20 <= frames(segment.uri) <= 30  # ~1 s at 25 fps, starting on a keyframe
        assert segment.start is not None and segment.duration == pytest.approx(1.0, abs=0.2)
    # start times: the stream's wall clock once an RTCP sender report came (GStreamer sends the
    # first within seconds), the arrival time before; either way close to when it arrived
    assert {s.start_clock for s in got} <= {"rtcp", "arrival"} and got[-1].start_clock == "rtcp"
    for s in got:
        assert abs(s.start.timestamp() + s.duration - s.arrived_at) < 3


async def test_the_spool_is_bounded_and_what_it_drops_is_recorded(tmp_path):
    with RtspServer(tmp_path) as server:
        async with running(server.url, tmp_path / "a", spool_keep=1) as (source, got, until, _):
            await until(lambda s: len(s) >= 4)
            async with asyncio.timeout(10):  # the trim runs every segment_seconds
                while len(list(source.folder.glob("seg*.ts"))) > 2:
                    await asyncio.sleep(0.1)
        # nothing acknowledged (a sink that is down): the size limit drops the oldest, recorded
        async with running(server.url, tmp_path / "b", ack=False, spool_max_mb=0.05) as (source, got, until, _):
            await until(lambda s: any("#dropped" in x.uri for x in s))
            assert sum(p.stat().st_size for p in source.folder.glob("seg*.ts")) <= 50_000 + 40_000
    dropped = next(s for s in got if "#dropped" in s.uri)
    with pytest.raises(SegmentError, match="skipped: dropped from the spool because the spool is over spool_max_mb"):
        dropped.open()


@pytest.mark.slow
async def test_server_down_15s_is_reconnected_within_5s_and_the_outage_recorded(tmp_path, caplog):
    caplog.set_level(logging.INFO, "livewatch.sources.rtsp")
    server = RtspServer(tmp_path).start()
    try:
        async with running(server.url, tmp_path) as (source, got, until, task):
            await until(lambda s: len(s) >= 2)
            server.kill()
            await asyncio.sleep(15)  # the outage itself, not a wait for a result
            assert not task.done()
            server.start()
            back = time.monotonic()
            await until(lambda s: any("#outage-" in x.uri for x in s), timeout=30)
            assert time.monotonic() - back <= 5, "reconnected later than 5 s after the server returned"
            before = len(got)
            await until(lambda s: len(s) >= before + 2)
            assert not task.done()
    finally:
        server.kill()
    outages = [s for s in got if "#outage-" in s.uri]
    assert len(outages) == 1
    with pytest.raises(SegmentError, match=r"stream outage: no video from .* to .*\(1[4-9]\.\ds\)"):
        outages[0].open()
    assert source.metrics.source_outages.labels("door")._value.get() == 1
    assert "lost the stream" in caplog.text and "Traceback" not in caplog.text


async def test_bad_urls_and_streams_without_video(tmp_path, caplog):
    with pytest.raises(pydantic.ValidationError):
        RtspOptions(url="camera-1")
    with RtspServer(tmp_path, audio_only=True) as audio:
        source = RtspSource(RtspOptions(url=audio.url, spool=tmp_path / "a", **FAST), instance="mic")
        with pytest.raises(ConfigError, match="rtsp source 'mic': .*no video stream"):
            await source.start()
        await source.close()
    # nothing listens: not a config error (a camera may come back), retried and logged
    caplog.set_level(logging.WARNING, "livewatch.sources.rtsp")
    async with running("rtsp://127.0.0.1:9/cam", tmp_path) as (source, got, until, task):
        async with asyncio.timeout(30):
            while caplog.text.count("reconnect") < 2:
                await asyncio.sleep(0.1)
        assert not task.done()
    assert "not reachable yet" in caplog.text and "Traceback" not in caplog.text


@pytest.mark.slow
def test_daemon_killed_mid_stream_loses_no_spooled_segment(tmp_path, random_i3d_dir):
    # the full-size random I3D takes longer per segment than the stream's 1 s: a backlog builds
    db, spool = tmp_path / "detections.db", tmp_path / "spool"
    config = tmp_path / "livewatch.toml"
    with RtspServer(tmp_path) as server:
        config.write_text(f"""
[daemon]
workers = 1
queue_size = 2
health_listen = ""

[classifier]
type = "i3d"
model = "{random_i3d_dir}"
windows = 12  # slower than the stream's real time, so that a backlog builds up in the spool

[[sources]]
type = "rtsp"
url = "{server.url}"
segment_seconds = 1.0
spool = "{spool}"
spool_keep = 100

{local_and_stdout_sinks(db)}""")
        first = RunningDaemon(tmp_path, config)
        def backlog() -> bool:
            return len(list((spool / "cam").glob("seg*.ts"))) >= len(first.lines()) + 2 >= 3

        wait_for(backlog, first)
        first.kill()
        spooled = {str(p) for p in (spool / "cam").glob("seg*.ts")}
        with sqlite3.connect(spool / "cam" / ".livewatch-checkpoint.sqlite") as conn:
            acked = {str(spool / "cam" / n) for (n,) in conn.execute("SELECT name FROM done")}
        assert spooled - acked, "the kill should leave spooled segments not yet acknowledged"
        second = RunningDaemon(tmp_path, config)
        pending = spooled - acked  # each must be classified by the second run
        wait_for(lambda: pending <= {line["uri"] for line in second.lines()}, second)
        assert second.stop() == 0, second.log()
    rows = store_rows(db)
    assert all(rows[u]["error"] is None and rows[u]["label"] for u in spooled)
    again = {line["uri"] for line in second.lines()}
    assert not acked & again, "an acknowledged segment came again"
    assert "Traceback" not in first.log() + second.log()
