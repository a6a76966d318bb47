"""A live RTSP camera on loopback for tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-{base,good,bad,ugly}) serving a
moving test picture as H.264, run by the system Python (`/usr/bin/python3`, where `gi` lives)
as a subprocess that can be killed and started again on the same port.

`python3 rtsp_server.py PORT [--audio-only]` is the server itself; `RtspServer` runs it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL = ("apt-get install -y gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
           "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly")

VIDEO = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=90,framerate=25/1 "
         "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
         "! rtph264pay name=pay0 pt=96 config-interval=1 )")
AUDIO = "( audiotestsrc is-live=true ! audioconvert ! opusenc ! rtpopuspay name=pay0 pt=97 )"


def missing() -> str | None:
    """What is missing to run the server (None: nothing), as an install command."""
    check = ("import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, "
             "GstRtspServer; Gst.init(None); assert Gst.ElementFactory.find('x264enc'); "
             "assert Gst.ElementFactory.find('rtph264pay'); assert Gst.ElementFactory.find('videotestsrc')")
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, timeout=60)
    except FileNotFoundError:
        return f"{SYSTEM_PYTHON} (apt-get install -y python3) and {INSTALL}"
    return None if result.returncode == 0 else INSTALL


class RtspServer:
    """rtsp://127.0.0.1:PORT/cam serving live H.264 (or, `audio_only`, Opus audio and no video)."""

    def __init__(self, log_dir: Path, audio_only: bool = False):
        problem = missing()
        if problem:
            raise RuntimeError(f"the RTSP test server needs GStreamer's RTSP server: {problem}")
        self.port = _free_port()
        self.audio_only = audio_only
        self.log_path = Path(log_dir) / f"rtsp-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> "RtspServer":
        args = [SYSTEM_PYTHON, __file__, str(self.port)] + (["--audio-only"] if self.audio_only else [])
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"RTSP server exited:\n{self.log_path.read_text()}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"RTSP server did not listen within 30 s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(30)
        self.process = None

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, audio_only: bool) -> None:  # pragma: no cover - runs under /usr/bin/python3
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(AUDIO if audio_only else VIDEO)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print(f"serving rtsp://127.0.0.1:{port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":  # pragma: no cover
    _serve(int(sys.argv[1]), "--audio-only" in sys.argv)
