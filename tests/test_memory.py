"""Running for weeks, in small: the real daemon (`livewatch run`, a live folder, the tiny I3D,
the local store and stdout) through 50 segments, its resident memory sampled as it goes. After a
warm-up, memory must not grow with the number of segments (`make soak` is the long version)."""
from pathlib import Path

import numpy as np
import pytest

from livewatch.testing.daemon_process import RunningDaemon, store_rows, wait_for, local_and_stdout_sinks
from livewatch.testing.media import HlsWriter

pytestmark = pytest.mark.slow

SEGMENTS, WARM_UP = 50, 10
#: Allowed RSS growth per segment after the warm-up: a leak of one decoded clip per segment
#: (8 frames of 128x171 RGB float32, ~2 MiB) is well above it.
MAX_SLOPE_MIB = 0.25


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_flat_over_50_segments(tmp_path, tiny_i3d_dir):
    live, db = tmp_path / "live", tmp_path / "detections.db"
    cam = HlsWriter(live / "cam", name="cam", seconds=1.0, size=(320, 180))
    for _ in range(SEGMENTS):
        cam.write_segment()
    config = tmp_path / "livewatch.toml"
    config.write_text(f"""
[daemon]
workers = 2
health_listen = ""

[classifier]
type = "i3d"
model = "{tiny_i3d_dir}"

[[sources]]
type = "folder"
path = "{live}"
settle_seconds = 0.5

{local_and_stdout_sinks(db)}""")
    daemon = RunningDaemon(tmp_path, config)
    samples: list[tuple[int, float]] = []  # (detections so far, RSS)

    def sample() -> bool:
        done = len(daemon.lines())
        if not samples or samples[-1][0] != done:
            samples.append((done, rss_mib(daemon.proc.pid)))
        return done >= SEGMENTS

    try:
        wait_for(sample, daemon, timeout=300, interval=0.05)
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log()[-3000:]
    rows = store_rows(db)
    assert len(rows) == SEGMENTS and all(r["error"] is None for r in rows.values())
    after = [(n, rss) for n, rss in samples if n >= WARM_UP]
    assert len(after) >= 10, samples  # enough points to fit a line
    slope = np.polyfit(*zip(*after), 1)[0]
    growth = after[-1][1] - after[0][1]
    report = f"RSS {after[0][1]:.0f} -> {after[-1][1]:.0f} MiB, slope {slope:+.3f} MiB/segment"
    assert slope < MAX_SLOPE_MIB, report
    assert growth < MAX_SLOPE_MIB * (SEGMENTS - WARM_UP), report
    print(report)
