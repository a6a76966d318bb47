"""dynalite: an independent DynamoDB implementation (Node.js, npm) that, like the real service and
unlike moto, rejects reserved words such as ``stream`` in expressions unless they are aliased.

It is installed by the set-up (``make setup`` runs ``python -m livewatch.testing.dynalite``), with
``npm install`` into the virtual environment (``<venv>/node/dynalite-<VERSION>``, or
``$LIVEWATCH_DYNALITE_DIR``); tests never install it. ``dynalite`` (session fixture): a `Dynalite`
server on a free port, in memory; when it is not installed or node is missing, a failure naming
what to install in CI and under ``make test`` (a skip elsewhere: `livewatch.testing.strict`). ``stop()`` / ``start()`` restart it on the same port (empty) for outage tests.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .aws import free_port
from .processes import stop_process_group
from .strict import require

VERSION = "4.0.0"


def install_dir() -> Path:
    default = Path(sys.prefix) / "node" / f"dynalite-{VERSION}"
    return Path(os.environ.get("LIVEWATCH_DYNALITE_DIR") or default)


def cli_path(prefix: Path | None = None) -> Path:
    return (prefix or install_dir()) / "node_modules" / "dynalite" / "cli.js"


def install(prefix: Path | None = None) -> Path:
    """dynalite's cli.js, installed under `prefix` unless it is there already (the set-up's job)."""
    prefix = prefix or install_dir()
    cli = cli_path(prefix)
    if cli.exists():
        return cli
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise FileNotFoundError("node and npm are needed to run dynalite")
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                    f"dynalite@{VERSION}"], check=True, capture_output=True, timeout=300)
    return cli


class Dynalite:
    def __init__(self, cli: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.cli, self.host = cli, host
        self.port = port or free_port(host)
        self.log_path = Path(tempfile.mkstemp(prefix="dynalite-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "Dynalite":
        if self.process is not None and self.process.poll() is None:
            return self
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["node", str(self.cli), "--host", self.host, "--port", str(self.port),
                 "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dynalite did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process_group(process, 5)


@pytest.fixture(scope="session")
def dynalite() -> Iterator[Dynalite]:
    cli = cli_path()
    require(None if shutil.which("node") else "dynalite needs node, which is not on PATH",
            "Node.js and npm (apt-get install nodejs npm), then `make setup`")
    require(None if cli.exists() else f"dynalite is not installed in {install_dir()}",
            "`make setup` (or `python -m livewatch.testing.dynalite`; it needs node and npm)")
    server = Dynalite(cli).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> int:
    """``python -m livewatch.testing.dynalite``: install dynalite for the tests (make setup)."""
    try:
        print(f"dynalite {VERSION}: {install()}")
    except FileNotFoundError as exc:
        print(f"error: dynalite not installed ({exc}); install Node.js and npm "
              "(apt-get install nodejs npm) and run `make setup` again", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"npm install dynalite@{VERSION} failed:\n{exc.stderr.decode(errors='replace')}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
