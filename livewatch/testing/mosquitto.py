"""A real MQTT broker for tests: Debian's `mosquitto`, on loopback, on a free port.

    with Mosquitto(tmp_path) as broker:      # broker.port; broker.restart() keeps the port
        ...

A missing `mosquitto` is a failure that says what to install (`make setup` installs it as root).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .processes import stop_process_group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, folder: Path):
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise RuntimeError("the MQTT tests need Debian's mosquitto: apt-get install mosquitto "
                               "(make setup installs it when run as root)")
        self.binary, self.folder, self.port = binary, Path(folder), _free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        config = self.folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                          f"persistence false\n")
        self.process = subprocess.Popen([self.binary, "-c", str(config)], start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} in {timeout}s")

    def stop(self) -> None:
        stop_process_group(self.process, 5.0)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "Mosquitto":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
