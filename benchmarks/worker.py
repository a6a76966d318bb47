"""A pipeline worker: one process per pipeline, driven over JSON lines on stdin/stdout.

Each pipeline runs in a process of its own so that (1) decord and PyAV, which both bundle
FFmpeg, never share a process, (2) each one's peak memory is its own, and (3) the driver can
alternate pipelines request by request, so a change in the machine's load hits both alike.

A request is ``{"op": name, ...}``; the reply is ``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}``. stdout is kept for replies: whatever a library prints goes to stderr.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve(handlers: dict[str, Callable[..., dict]]) -> None:
    """Answer requests until stdin closes or ``{"op": "quit"}``."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries that print now print to stderr
    sys.stdout = sys.stderr
    handlers = {"memory": memory, **handlers}
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = {"ok": True, **handlers[op](**request)}
        except Exception as exc:  # reported to the driver, which stops the run
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")


def memory() -> dict:
    """This process's resident memory now and at its peak, in MiB (from /proc)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return {"rss_mib": round(fields["VmRSS"], 1), "peak_mib": round(fields["VmHWM"], 1)}


class Worker:
    """The driver's handle on a worker process."""

    def __init__(self, name: str, module: str, *args: str, env: dict | None = None, log=None):
        self.name = name
        self.setup: dict = {}  # the reply to its "setup" request
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=ROOT, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def call(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit status {self.proc.wait()}); see its log")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"worker {self.name}: {op} failed: {reply['error']}\n{reply['traceback']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
