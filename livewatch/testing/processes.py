"""Stopping the servers the tests start (moto, dynalite, multi-model-server)."""
from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen | None, timeout: float) -> None:
    """Stop a server started with ``start_new_session=True``, children included: SIGTERM to its
    process group, SIGKILL after `timeout` seconds, then SIGKILL to whatever of the group is
    left (a Java server's Python workers, node's helpers)."""
    if process is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
