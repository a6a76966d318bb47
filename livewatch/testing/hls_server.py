"""A live HLS stream over HTTP on loopback, for tests of sources that read HLS by URL.

`HlsServer` serves a folder with aiohttp from a thread of its own (so sync tests and tests that run
the daemon as a subprocess can use it) and can be stopped and started again on the same port, as
an origin that goes down. `LiveEncoder` plays an `HlsWriter` in real time in another thread.
`encrypt_stream` and `master_playlist` derive an AES-128 copy and a master playlist.
"""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .media import HlsWriter


class HlsServer:
    """Serves `root` at http://127.0.0.1:PORT/ (Range requests included); `requests` lists the
    paths asked for, in order."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.port: int | None = None
        self.requests: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hls-server", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> "HlsServer":
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection: clients see connection refused."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    async def _start(self) -> None:
        @web.middleware
        async def record(request, handler):
            self.requests.append(request.path)
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.router.add_static("/", self.root)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> "HlsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class LiveEncoder:
    """Writes a segment of `writer` every `writer.seconds` of wall-clock time, from a thread, up to
    `count` segments (None: until stopped); `after_segment(path)` runs after each."""

    def __init__(self, writer: HlsWriter, count: int | None = None, after_segment=None):
        self.writer = writer
        self.count = count
        self.after_segment = after_segment
        self.written = threading.Event()  # set after each segment
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-encoder", daemon=True)

    def start(self) -> "LiveEncoder":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set() and (self.count is None or len(self.writer.segments) < self.count):
            path = self.writer.write_segment()
            if self.after_segment is not None:
                self.after_segment(path)
            self.written.set()
            self._stop.wait(self.writer.seconds)


def encrypt_stream(source: HlsWriter, folder: str | os.PathLike, key: bytes, *, ended: bool = False) -> Path:
    """An AES-128 copy of the writer's stream in `folder` (segments encrypted, IV = the media
    sequence, as when EXT-X-KEY has no IV; the key served as `key.bin`): its playlist's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.bin").write_bytes(key)
    lines = source.playlist.read_text().splitlines()
    out = []
    for line in lines:
        out.append(line)
        if line.startswith("#EXT-X-MEDIA-SEQUENCE"):
            out.append('#EXT-X-KEY:METHOD=AES-128,URI="key.bin"')
    first = int(next(l for l in lines if l.startswith("#EXT-X-MEDIA-SEQUENCE")).split(":")[1])
    names = [l for l in lines if l and not l.startswith("#")]
    for sequence, name in enumerate(names, start=first):
        padder = padding.PKCS7(128).padder()
        data = padder.update((source.folder / name).read_bytes()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(sequence.to_bytes(16, "big"))).encryptor()
        (folder / name).write_bytes(encryptor.update(data) + encryptor.finalize())
    if ended:
        out.append("#EXT-X-ENDLIST")
    playlist = folder / source.playlist.name
    playlist.write_text("\n".join(out) + "\n")
    return playlist


def end_stream(playlist: str | os.PathLike) -> None:
    """Append EXT-X-ENDLIST, as an encoder does when the broadcast ends."""
    path = Path(playlist)
    path.write_text(path.read_text().rstrip("\n") + "\n#EXT-X-ENDLIST\n")


def master_playlist(path: str | os.PathLike, variants: list[tuple[str, int, str]]) -> Path:
    """A master playlist at `path` listing (uri, bandwidth, "WxH") variants."""
    lines = ["#EXTM3U"]
    for uri, bandwidth, resolution in variants:
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={resolution},CODECS=\"avc1.42c01e\"", uri]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path
