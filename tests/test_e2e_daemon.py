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
