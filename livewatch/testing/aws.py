"""A local AWS emulator for tests: moto in server mode, reached over real HTTP.

The daemon, the CLI and any plugin talk to it exactly as they talk to AWS, through the standard
``AWS_ENDPOINT_URL`` variable (botocore >= 1.31 reads it, and ``AWS_ENDPOINT_URL_<SERVICE>``), so
nothing in the code under test knows it is being tested. Fixtures:

``moto_server`` (session)
    One ``moto_server`` subprocess for the whole test session. A `MotoServer`: ``endpoint_url``,
    ``env()`` (the variables a subprocess needs), ``reset()``, and ``stop()`` / ``start()`` /
    ``restart()`` on the same port, for tests of what happens when AWS goes away mid-run.
``aws_env`` (function)
    Points this process at the server (fake credentials, ``us-east-1``, ``AWS_ENDPOINT_URL``),
    resets the emulator's state first, and returns the environment for subprocesses::

        def test_upload(aws_env):
            boto3.client("s3").create_bucket(Bucket="b")        # goes to moto
            subprocess.run(["livewatch", ...], env=aws_env)     # so does this

``aws_credentials`` (function)
    Fake credentials and a region only, no endpoint: for code that must never reach AWS.

One server serves the session and ``aws_env`` empties it before each test, so tests that use it
run one at a time (no pytest-xdist on it). A test that stops the server must leave it running
(``moto_server.start()`` in a ``finally``); ``aws_env`` restarts it if one did not.
What moto emulates, and how far (CloudFormation skips some resource types): tests/test_deploy.py.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import stop_process_group

REGION = "us-east-1"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Never read the developer's ~/.aws files: a profile there must not leak into a test.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # No instance-metadata lookups (slow timeouts on machines that are not EC2).
    "AWS_EC2_METADATA_DISABLED": "true",
}

#: Variables removed so the real environment cannot redirect or authenticate a test.
_SCRUBBED_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                      "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_", "AWS_SECURITY_TOKEN")


def fake_aws_env(endpoint_url: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) with fake credentials, the test region and, if given, the
    endpoint; any real profile, role or endpoint variable is removed."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(FAKE_CREDENTIALS)
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def moto_server_executable() -> Path:
    """``moto_server`` from the environment running the tests (next to ``sys.executable``)."""
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise RuntimeError(f"{path} not found: install moto[server] into this environment")
    return path


class MotoServer:
    """A ``moto_server`` subprocess on 127.0.0.1:`port` (a free one unless given).

    Its output goes to `log_path`; `log_tail()` shows the end of it when something fails.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="moto-server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that should use this server (see `fake_aws_env`)."""
        return fake_aws_env(self.endpoint_url, base)

    def start(self, timeout: float = 30.0) -> MotoServer:
        """Start the server (on the same port as before, after a `stop`) and wait until it answers."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(moto_server_executable()), "-H", self.host, "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=fake_aws_env(), start_new_session=True,  # its own process group, killed as one
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with status {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto_server did not answer on {self.endpoint_url} within "
                                   f"{timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """Kill the server's process group: SIGTERM, then SIGKILL after `timeout` seconds.

        Everything the emulator held (buckets, queues, stacks) is gone after a stop.
        """
        process, self.process = self.process, None
        stop_process_group(process, timeout)

    def restart(self, timeout: float = 30.0) -> MotoServer:
        """Stop and start again on the same port (with empty state)."""
        self.stop()
        return self.start(timeout)

    def ensure_running(self) -> MotoServer:
        return self if self.running and self.answers() else self.restart()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def reset(self) -> None:
        """Forget every resource in every service (``POST /moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server for the whole session (see the module docstring)."""
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with MotoServer(log_path=log) as server:
        yield server


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials and region in this process, no endpoint; returns the subprocess env."""
    env = fake_aws_env()
    _apply(monkeypatch, env)
    return env


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process pointed at an emptied `moto_server`; returns the env for subprocesses."""
    moto_server.ensure_running()
    moto_server.reset()
    env = moto_server.env()
    _apply(monkeypatch, env)
    return env


def _apply(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
