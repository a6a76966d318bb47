"""End to end with the `hls` source: `livewatch run` as a subprocess reading a live stream over
HTTP from a loopback server, classified by the tiny random I3D (1 s segments: time compressed)."""
import sqlite3
from collections import Counter

import pytest

from livewatch.testing.daemon_process import RunningDaemon, store_rows, wait_for, local_and_stdout_sinks
from livewatch.testing.hls_server import HlsServer, LiveEncoder, encrypt_stream, end_stream
from livewatch.testing.media import HlsWriter

pytestmark = pytest.mark.slow

SEGMENTS = 8


def config(tmp_path, model_dir, sources: str, workers: int = 1) -> tuple:
    db = tmp_path / "detections.db"
    path = tmp_path / "livewatch.toml"
    path.write_text(f"""
[daemon]
workers = {workers}
queue_size = 2
shutdown_timeout = 60
health_listen = ""

[classifier]
type = "i3d"
model = "{model_dir}"
top_k = 3
{sources}
{local_and_stdout_sinks(db)}""")
    return path, db


def test_aes128_stream_gives_the_same_detections_as_the_clear_one(tmp_path, tiny_i3d_dir):
    www = tmp_path / "www"
    writer = HlsWriter(www / "clear", name="cam", seconds=1.0, size=(160, 90))
    for _ in range(3):
        writer.write_segment()
    encrypt_stream(writer, www / "aes", bytes(range(16)), ended=True)
    end_stream(writer.playlist)
    with HlsServer(www) as server:
        sources = "".join(f"""
[[sources]]
type = "hls"
name = "{name}"
url = "{server.url(f'{name}/cam.m3u8')}"
stream = "{name}"
checkpoint = "{tmp_path / name}.sqlite"
once = true
""" for name in ("clear", "aes"))
        path, db = config(tmp_path, tiny_i3d_dir, sources)
        daemon = RunningDaemon(tmp_path, path)
        assert daemon.proc.wait(240) == 0, daemon.log()
    by_stream = {"clear": {}, "aes": {}}
    for line in daemon.lines():
        by_stream[line["stream"]][line["sequence"]] = line
    assert sorted(by_stream["clear"]) == sorted(by_stream["aes"]) == [0, 1, 2]
    for sequence, clear in by_stream["clear"].items():
        aes = by_stream["aes"][sequence]
        assert clear["error"] is None and aes["error"] is None
        assert (aes["label"], aes["top_k"], aes["frames"]) == (clear["label"], clear["top_k"], clear["frames"])
    assert "Traceback" not in daemon.log()


def test_sigkill_mid_stream_then_restart_repeats_and_skips_nothing(tmp_path, tiny_i3d_dir):
    www = tmp_path / "www"
    writer = HlsWriter(www / "cam", name="cam", seconds=1.0, size=(160, 90))
    checkpoint = tmp_path / "cam.sqlite"
    encoder = LiveEncoder(writer, count=SEGMENTS)
    with HlsServer(www) as server:
        writer.write_segment()
        sources = f"""
[[sources]]
type = "hls"
url = "{server.url('cam/cam.m3u8')}"
checkpoint = "{checkpoint}"
"""
        path, db = config(tmp_path, tiny_i3d_dir, sources)
        encoder.start()
        first = RunningDaemon(tmp_path, path)
        wait_for(lambda: len(first.lines()) >= 2, first)
        first.kill()  # no chance to finish, release or close anything
        with sqlite3.connect(checkpoint) as conn:
            acked = {uri for (uri,) in conn.execute("SELECT name FROM done")}
        assert len(acked) < SEGMENTS, "the kill should land mid-stream"

        second = RunningDaemon(tmp_path, path)
        wait_for(lambda: len(store_rows(db)) == SEGMENTS, second)
        assert second.stop() == 0, second.log()
    encoder.stop()
    uris = [server.url(f"cam/{p.name}") for p in writer.segments]
    rows = store_rows(db)
    assert sorted(rows) == uris
    assert [rows[u]["sequence"] for u in uris] == list(range(SEGMENTS))
    assert all(r["error"] is None and r["label"] and r["start"] for r in rows.values())
    assert {r["start_clock"] for r in rows.values()} == {"program-date-time"}
    again = Counter(line["uri"] for line in second.lines())
    assert not acked & set(again), "an acknowledged segment came again after the restart"
    assert set(again) | acked == set(uris) and max(again.values()) == 1
    assert "Traceback" not in first.log() + second.log()
