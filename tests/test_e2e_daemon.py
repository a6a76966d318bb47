"""End to end, as a user runs it: `livewatch run --config ...` as a subprocess on a folder that an
encoder writes a live HLS stream into, with a real (randomly initialised) I3D model."""
import json
import os
import subprocess

import pytest

from livewatch.testing.daemon_process import LIVEWATCH, RunningDaemon, store_rows, wait_for, local_and_stdout_sinks
from livewatch.testing.media import HlsWriter

pytestmark = pytest.mark.slow


def test_daemon_classifies_a_live_folder_and_restarts_without_repeats_or_gaps(tmp_path, random_i3d_dir):
    live = tmp_path / "live"
    db = tmp_path / "data" / "detections.db"
    config = tmp_path / "livewatch.toml"
    config.write_text(f"""
[daemon]
workers = 1
shutdown_timeout = 60

[classifier]
type = "i3d"
model = "{random_i3d_dir}"
top_k = 3

[[sources]]
type = "folder"
path = "{live}"
settle_seconds = 1.0

{local_and_stdout_sinks(db)}""")
    cam = HlsWriter(live / "cam1", name="index", seconds=4.0, size=(480, 270))
    cam.write_segment()  # already there when the daemon starts

    first = RunningDaemon(tmp_path, config)
    cam.write_segment()  # written while it runs
    broken = live / "broken"
    broken.mkdir()
    (broken / "empty.ts").write_bytes(b"")
    (broken / "garbage.ts").write_bytes(os.urandom(50_000))
    wait_for(lambda: len(store_rows(db)) == 4, first)
    assert first.stop() == 0, first.log()

    rows = store_rows(db)
    good = {str(p) for p in cam.segments}
    assert set(rows) == good | {str(broken / "empty.ts"), str(broken / "garbage.ts")}
    for uri in good:
        assert rows[uri]["error"] is None and rows[uri]["label"] and len(rows[uri]["top_k"]) == 3
        assert rows[uri]["stream"] == "cam1"
        # "cover": 100 frames, 32-frame windows: 4 windows, every frame inside one
        assert len(rows[uri]["windows"]) == 4 and len(rows[uri]["frames"]) == 4 * 32
        assert rows[uri]["windows"][0]["start"] == 0 and rows[uri]["windows"][-1]["end"] == 4.0
    assert [rows[str(p)]["sequence"] for p in cam.segments] == [0, 1]
    assert "empty" in rows[str(broken / "empty.ts")]["error"]
    assert rows[str(broken / "garbage.ts")]["error"]
    printed = [line["uri"] for line in first.lines()]
    assert sorted(printed) == sorted(rows)  # each detection printed once

    cam.write_segment()  # written while the daemon is down: must not be skipped
    second = RunningDaemon(tmp_path, config)
    wait_for(lambda: len(second.lines()) == 1, second)
    cam.write_segment()  # and one more while it runs again
    wait_for(lambda: len(second.lines()) == 2, second)
    assert second.stop() == 0, second.log()

    assert [line["uri"] for line in second.lines()] == [str(p) for p in cam.segments[2:]]
    assert len(store_rows(db)) == 6


def test_classify_prints_one_detection_per_file(tmp_path, random_i3d_dir):
    cam = HlsWriter(tmp_path, name="seg", seconds=4.0, size=(480, 270))
    good = cam.write_segment()
    bad = tmp_path / "notes.ts"
    bad.write_text("this is not a video")
    gone = tmp_path / "gone.ts"
    result = subprocess.run(
        [LIVEWATCH, "classify", str(good), str(bad), str(gone), "--model", str(random_i3d_dir),
         "--windows", "2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr  # one file failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["uri"] for d in lines] == [str(good), str(bad), str(gone)]
    assert lines[0]["error"] is None and lines[0]["label"]
    assert [w["frames"] for w in lines[0]["windows"]] == [[17, 48], [51, 82]]  # GluonCV's N=2 of 100
    assert lines[1]["label"] is None and lines[1]["error"].startswith("not a video")
    assert lines[2]["error"].startswith("segment file is gone")


def test_run_once_on_a_finished_stream_leaves_no_open_event_and_tells_the_webhook(tmp_path, tiny_i3d_dir):
    """`livewatch run --once --folder` on a recording whose playlist has EXT-X-ENDLIST: every
    event is closed in the store, and a webhook receiver is told `closed` for the last one."""
    import http.server
    import threading

    from livewatch.testing.hls_server import end_stream

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live, db = tmp_path / "live", tmp_path / "d.db"
    cam = HlsWriter(live / "cam1", name="index", seconds=2.0, size=(160, 96))
    for _ in range(3):
        cam.write_segment()
    end_stream(cam.playlist)  # the recording is finished
    (tmp_path / "livewatch.toml").write_text(f"""
[daemon]
workers = 1
health_listen = ""

[events]
min_probability = 0.0  # every window counts, whatever the random model says
min_duration = 0.0

[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"

[[sinks]]
type = "local"
path = "{db}"

[[sinks]]
type = "webhook"
url = "http://127.0.0.1:{server.server_address[1]}/hook"
""")
    try:
        run = subprocess.run([LIVEWATCH, "run", "--once", "--folder", str(live)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-5000:]
    listed = subprocess.run([LIVEWATCH, "events", "--db", str(db), "--format", "json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert events and [e["state"] for e in events] == ["closed"] * len(events)
    assert events[-1]["segments"][-1] == str(cam.segments[-1])  # the last event reaches the end
    final = {}
    for change in received:
        final[change["id"]] = change
    assert final[events[-1]["id"]]["type"] == "closed"
    assert final[events[-1]["id"]]["revision"] == events[-1]["revision"]
    assert {c["type"] for c in final.values()} == {"closed"}
    assert store_rows(db)[str(cam.segments[-1])]["last"] is True
