"""`livewatch run` as a subprocess, as a user starts it, for end-to-end tests."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))


class RunningDaemon:
    """`livewatch run --config CONFIG` in `workdir`; stdout (JSON lines) and stderr go to files."""

    def __init__(self, workdir: Path, config: Path):
        self.stdout_path = workdir / f"stdout-{time.monotonic_ns()}.jsonl"
        self.stderr_path = self.stdout_path.with_suffix(".log")
        self.proc = subprocess.Popen(
            [LIVEWATCH, "run", "--config", str(config)], cwd=workdir,
            stdout=open(self.stdout_path, "w"), stderr=open(self.stderr_path, "w"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines() if line.strip()]

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> int:
        self.proc.kill()
        return self.proc.wait(30)

    def log(self) -> str:
        return self.stderr_path.read_text()


def local_and_stdout_sinks(db: Path | str) -> str:
    """The ``[[sinks]]`` TOML most end-to-end tests give a daemon: the local store in `db`, and
    JSON lines on stdout (which `RunningDaemon` reads)."""
    return f'''[[sinks]]
type = "local"
path = "{db}"

[[sinks]]
type = "stdout"
format = "json"
'''


def store_rows(db: Path) -> dict[str, dict]:
    """The local store's detections by URI (empty if the daemon has not created it yet)."""
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT uri, detection FROM detections").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # the file exists, its table not yet: not created
                return {}
            raise
        return {uri: json.loads(d) for uri, d in rows}


def wait_for(predicate, daemon: RunningDaemon, timeout: float = 240.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert daemon.proc.poll() is None, f"daemon exited early:\n{daemon.log()}"
        time.sleep(interval)
    raise AssertionError(f"timed out; daemon log:\n{daemon.log()}")
