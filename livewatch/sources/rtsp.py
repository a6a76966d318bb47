"""The built-in `rtsp` source: a camera, or any live URL FFmpeg opens (rtsp://, rtmp://, srt://...).

`rtsp_record.Recorder` (PyAV, in a thread) cuts the stream at keyframes into MPEG-TS segments in a
spool folder with a playlist; an inner `folder` source hands them on with its checkpoint, so a
segment spooled but not yet acknowledged survives a SIGKILL. When the stream ends, errors or
stalls (no packet for `stall_seconds`), the recorder reconnects with capped backoff; each outage
is logged (from, to, why), counted in `livewatch_source_outages_total` and recorded as an error
detection (`uri` `<url>#outage-<from>`). The spool is bounded: acknowledged segments are deleted
past `spool_keep`, and when it grows over `spool_max_mb` or `spool_max_age` the oldest segments go,
those not acknowledged recorded as skipped (an error detection each). Segment start times come
from the stream's wall clock (RTCP sender reports) once it has one, else from arrival; each
detection's `start_clock` says which.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..components import Emit, Options, Source
from ..contract import Segment
from ..errors import ConfigError, SegmentError
from ..hookspecs import hookimpl
from .folder import FolderOptions, FolderSource
from .rtsp_record import SEGMENT_RE, NoVideo, Recorder, StreamLost

log = logging.getLogger("livewatch.sources.rtsp")


class RtspOptions(Options):
    url: str = Field(description="rtsp://, rtmp://, srt://... anything FFmpeg opens")
    stream: str | None = Field(None, description="stream name in detections; default: from the URL")
    segment_seconds: float = Field(10.0, gt=0, description="cut at the first keyframe after this long")
    transport: str = Field("tcp", description="RTSP transport (FFmpeg's rtsp_transport)")
    ffmpeg_options: dict[str, str] = Field(default_factory=dict, description="passed to FFmpeg as is")
    open_timeout: float = Field(10.0, gt=0, description="seconds to open the stream")
    stall_seconds: float = Field(10.0, gt=0, description="no packet for this long: reconnect")
    backoff_max: float = Field(3.0, gt=0, description="longest wait between two reconnects (a camera "
                               "that comes back is read again within about this long)")
    spool: Path = Field(Path("spool"), description="folder for the segments (one subfolder per stream)")
    spool_keep: int = Field(6, ge=0, description="acknowledged segments kept in the spool")
    spool_max_mb: float = Field(1024.0, gt=0, description="the spool's size limit")
    spool_max_age: float = Field(3600.0, gt=0, description="seconds a segment may wait in the spool")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value and not value.startswith("/dev/"):
            raise ValueError("a URL such as rtsp://camera:554/stream (or a device path)")
        return value


@dataclass(frozen=True)
class Note:
    """The ack handle of an outage or spool-drop record: nothing to acknowledge to the spool."""

    why: str


class RtspSource(Source):
    """A live camera or any FFmpeg URL, spooled into segments; reconnects by itself."""

    name = "rtsp"
    Options = RtspOptions
    options: RtspOptions

    def media_root(self) -> Path:
        return self.options.spool

    def __init__(self, options: RtspOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.stream = options.stream or _stream_name(options.url)
        self.folder = Path(os.path.abspath(options.spool)) / self.stream
        self._spool: FolderSource | None = None
        self._recorder: Recorder | None = None
        self._stop = threading.Event()
        self._notes: asyncio.Queue[Segment] = asyncio.Queue()
        # FFmpeg's reads block for as long as the stream lasts: a thread of its own, not the loop's pool
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"rtsp-{self.instance}")

    def _ffmpeg_options(self) -> dict[str, str]:
        options = dict(self.options.ffmpeg_options)
        if self.options.url.startswith(("rtsp://", "rtsps://")):
            options.setdefault("rtsp_transport", self.options.transport)
        return options

    async def start(self) -> None:
        o = self.options
        try:
            self._recorder = await asyncio.to_thread(
                Recorder, o.url, self.folder, segment_seconds=o.segment_seconds,
                options=self._ffmpeg_options(), open_timeout=o.open_timeout, stall_seconds=o.stall_seconds)
        except OSError as exc:
            raise ConfigError(f"rtsp source {self.instance!r}: cannot use spool {self.folder}: {exc}") from None
        try:
            await asyncio.to_thread(self._recorder.probe)
        except NoVideo as exc:
            raise ConfigError(f"rtsp source {self.instance!r}: {exc}") from None
        except StreamLost as exc:
            log.warning("rtsp source %r: %s; not reachable yet, retrying in the background", self.instance, exc)
        self._spool = FolderSource(FolderOptions(path=self.folder, subfolders=False, settle_seconds=1.0,
                                                 poll_interval=1.0), instance=self.instance)
        await self._spool.start()

    async def close(self) -> None:
        self._stop.set()
        self._thread.shutdown(wait=False)
        if self._spool is not None:
            await self._spool.close()
            self._spool = None

    async def run(self, emit: Emit) -> None:
        async def emit_notes() -> None:
            while True:
                await emit(await self._notes.get())

        async def emit_spooled(segment: Segment) -> None:
            # unknown (None) for a segment spooled before a restart
            segment.start_clock = self._recorder.clocks.get(os.path.basename(segment.uri))
            await emit(segment)

        async def trim() -> None:  # the spool's bounds hold also when nothing is acknowledged
            while True:
                await asyncio.sleep(self.options.segment_seconds)
                for note in await asyncio.to_thread(self._trim):
                    self._notes.put_nowait(note)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._record(), name=f"rtsp-record:{self.instance}")
            tasks.create_task(self._spool.run(emit_spooled), name=f"rtsp-spool:{self.instance}")
            tasks.create_task(emit_notes(), name=f"rtsp-notes:{self.instance}")
            tasks.create_task(trim(), name=f"rtsp-trim:{self.instance}")

    async def ack(self, segment: Segment) -> None:
        if isinstance(segment.ack_handle, Note):
            return
        await self._spool.ack(segment)

    async def release(self, segment: Segment) -> None:
        if not isinstance(segment.ack_handle, Note):
            await self._spool.release(segment)

    # -- recording and reconnecting --------------------------------------------------------------

    async def _record(self) -> None:
        """Record, reconnecting forever: each outage (from, to, why) is logged and recorded."""
        attempt, lost_at, why = 0, None, ""
        while True:
            self._recorder.connected.clear()
            stop = self._stop = threading.Event()
            recording = asyncio.get_running_loop().run_in_executor(self._thread, self._recorder.record, stop)
            try:
                while not recording.done() and not self._recorder.connected.is_set():
                    await asyncio.wait({recording}, timeout=0.1)
                if self._recorder.connected.is_set():
                    if lost_at is not None:
                        self._outage(lost_at, why)
                        lost_at = None
                    attempt = 0
                    log.info("rtsp source %r: receiving %s", self.instance, self.options.url)
                try:
                    await asyncio.shield(recording)
                    why = "the stream ended"
                except (StreamLost, NoVideo) as exc:
                    why = str(exc)
            except asyncio.CancelledError:
                stop.set()  # the thread returns at its next packet or read timeout
                raise
            if lost_at is None:
                lost_at = time.time()
                log.warning("rtsp source %r: lost the stream: %s", self.instance, why)
            attempt += 1
            wait = min(self.options.backoff_max, 0.5 * 2 ** (attempt - 1))
            log.warning("rtsp source %r: %s; reconnect %d in %.1fs", self.instance, why, attempt, wait)
            await asyncio.sleep(wait)

    def _outage(self, since: float, why: str) -> None:
        until = time.time()
        text = (f"stream outage: no video from {_iso(since)} to {_iso(until)} "
                f"({until - since:.1f}s): {why}")
        log.warning("rtsp source %r: reconnected; %s", self.instance, text)
        if self.metrics is not None:
            self.metrics.source_outages.labels(self.instance).inc()
        self._notes.put_nowait(self._note(f"{self.options.url}#outage-{_iso(since)}", text, since, until - since))

    def _note(self, uri: str, text: str, start: float, duration: float | None) -> Segment:
        """A record for the timeline: an error detection saying `text`."""
        def fail():
            raise SegmentError(text)

        return Segment(
            uri=uri, stream=self.stream, open=fail, source=self.instance, ack_handle=Note(text),
            start=datetime.fromtimestamp(start, timezone.utc), duration=duration)

    # -- the bounded spool -----------------------------------------------------------------------

    def _trim(self) -> list[Segment]:
        """Blocking: delete acknowledged segments past `spool_keep`; over the size or age limit,
        the oldest segments, acknowledged or not (those not are recorded as skipped)."""
        done = self._spool.acknowledged_files()
        files = sorted((n for n in os.listdir(self.folder) if SEGMENT_RE.match(n)))
        stats = {}
        for name in files:
            try:
                stats[name] = os.stat(self.folder / name)
            except FileNotFoundError:
                continue
        files = [n for n in files if n in stats]
        notes = []
        acked = [n for n in files if n in done]
        drop = set(acked[: max(0, len(acked) - self.options.spool_keep)])
        size = sum(stats[n].st_size for n in files if n not in drop)
        now = time.time()
        for name in files:
            too_big = size > self.options.spool_max_mb * 1_000_000
            too_old = now - stats[name].st_mtime > self.options.spool_max_age
            if name in drop or not (too_big or too_old):
                continue
            drop.add(name)
            size -= stats[name].st_size
            if name not in done:
                why = "the spool is over spool_max_mb" if too_big else "it waited longer than spool_max_age"
                log.warning("rtsp source %r: %s dropped from the spool unclassified: %s", self.instance, name, why)
                notes.append(self._note(f"{self.folder / name}#dropped", f"skipped: dropped from the spool because "
                                        f"{why}", stats[name].st_mtime, None))
        for name in drop:
            (self.folder / name).unlink(missing_ok=True)
        if drop:
            self._recorder.forget(drop)
        return notes


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stream_name(url: str) -> str:
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    return path[-1] if path else (parts.hostname or "camera")


@hookimpl
def register_sources(register):
    register(RtspSource)
