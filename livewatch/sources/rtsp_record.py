"""The `rtsp` source's recorder: PyAV reads a live URL and cuts its video, at keyframes, into
MPEG-TS segments of about `segment_seconds` in a spool folder, remuxed (no re-encoding), with an
HLS playlist that gives each its media sequence, start and duration, so the folder source can
take them from there.

Blocking (FFmpeg's reads block): run `Recorder.record` in a thread. It returns when the stream
ends and raises `StreamLost` when it errors or stalls (PyAV's read timeout); `stop` (an event)
makes it return at the next packet. Each segment is written under a temporary name and renamed,
then the playlist is rewritten the same way, as FFmpeg's `hls_flags temp_file` does.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import av

log = logging.getLogger("livewatch.sources.rtsp")

SEGMENT_RE = re.compile(r"^seg(\d{10})\.ts$")
PLAYLIST = "index.m3u8"
MIN_FRAMES = 3  # a segment cut short by a drop is kept when it holds this many frames


class StreamLost(Exception):
    """The stream could not be opened, errored or stalled; `str()` says why."""


class NoVideo(Exception):
    """The URL opened, but it carries no video stream."""


@dataclass
class Spooled:
    sequence: int
    name: str
    start: datetime
    duration: float
    frames: int
    clock: str  # where `start` comes from: "rtcp" or "arrival"


class Recorder:
    def __init__(self, url: str, spool: Path, *, segment_seconds: float, options: dict[str, str],
                 open_timeout: float, stall_seconds: float, window: int = 500):
        self.url, self.spool = url, Path(spool)
        self.segment_seconds = segment_seconds
        self.options = options
        self.timeout = (open_timeout, stall_seconds)
        self.window = window
        self.listed: list[Spooled] = []
        self.next_sequence = self._next_sequence()
        self.clocks: dict[str, str] = {}  # segment name -> "rtcp" or "arrival" (see `_wall_clock`)
        self.connected = threading.Event()  # set once a stream is open and a packet arrived
        self._lock = threading.Lock()  # `listed` and the playlist: the recorder's thread and `forget`

    def _next_sequence(self) -> int:
        """After a restart, carry on after the highest segment in the spool."""
        self.spool.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for n in os.listdir(self.spool) if (m := SEGMENT_RE.match(n))]
        for name in os.listdir(self.spool):
            if name.endswith(".tmp"):  # a segment being written when the daemon was killed
                os.unlink(self.spool / name)
        return max(numbers, default=-1) + 1

    def probe(self) -> None:
        """Open the URL once and check it carries video. Raises NoVideo or StreamLost."""
        container = self._open()
        try:
            if not container.streams.video:
                raise NoVideo(f"{self.url} has no video stream (streams: "
                              f"{', '.join(s.type for s in container.streams) or 'none'})")
        finally:
            container.close()

    def _open(self):
        try:
            return av.open(self.url, options=self.options, timeout=self.timeout)
        except (av.FFmpegError, OSError) as exc:
            raise StreamLost(f"cannot open {self.url}: {exc}") from None

    def record(self, stop: threading.Event) -> None:
        container = self._open()
        try:
            if not container.streams.video:
                raise NoVideo(f"{self.url} has no video stream")
            video = container.streams.video[0]
            self._copy(container, video, stop)
        finally:
            container.close()

    def _copy(self, container, video, stop: threading.Event) -> None:
        out = None
        try:
            for packet in container.demux(video):
                if stop.is_set():
                    break
                if packet.dts is None and packet.pts is None:  # a flush packet: the stream ended
                    continue
                self.connected.set()
                if packet.is_keyframe and (out is None or out.seconds(packet) >= self.segment_seconds):
                    if out is not None:
                        self._finish(out)
                    out = _Segment(self.spool, self.next_sequence, video, *_wall_clock(container, video, packet))
                    self.next_sequence += 1
                if out is not None:  # packets before the first keyframe cannot be decoded alone
                    out.write(packet)
        except (av.FFmpegError, OSError) as exc:
            self._finish(out, cut=True)
            out = None
            raise StreamLost(f"{type(exc).__name__}: {exc}") from None
        finally:
            if out is not None:
                self._finish(out, cut=True)

    def _finish(self, out: "_Segment", cut: bool = False) -> None:
        if out is None:
            return
        spooled = out.close(keep=not cut or out.frames >= MIN_FRAMES)
        if spooled is None:
            log.info("rtsp: dropped a segment cut after %d frame(s)", out.frames)
            return
        with self._lock:
            self.listed = (self.listed + [spooled])[-self.window :]
            self.clocks[spooled.name] = spooled.clock
            self._write_playlist()

    def _write_playlist(self) -> None:
        target = max(1, math.ceil(max(s.duration for s in self.listed)))
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{self.listed[0].sequence}"]
        previous = None
        for s in self.listed:
            if previous is not None and s.sequence != previous + 1:
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:{s.start.isoformat(timespec='milliseconds')}",
                      f"#EXTINF:{s.duration:.3f},", s.name]
            previous = s.sequence
        temp = self.spool / f".{PLAYLIST}.tmp"
        temp.write_text("\n".join(lines) + "\n")
        os.replace(temp, self.spool / PLAYLIST)

    def forget(self, names: set[str]) -> None:
        """Segments deleted from the spool leave the playlist too."""
        with self._lock:
            kept = [s for s in self.listed if s.name not in names]
            for name in names:
                self.clocks.pop(name, None)
            if len(kept) != len(self.listed):
                self.listed = kept
                if kept:
                    self._write_playlist()


class _Segment:
    """One MPEG-TS file being written: the input's video packets, copied."""

    def __init__(self, spool: Path, sequence: int, video, start: datetime, clock: str):
        self.sequence = sequence
        self.name = f"seg{sequence:010d}.ts"
        self.path = spool / self.name
        self.temp = spool / f".{self.name}.tmp"
        self.start, self.clock = start, clock
        self.time_base = video.time_base
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.frames = 0
        self.container = av.open(str(self.temp), "w", format="mpegts")
        self.stream = self.container.add_stream_from_template(video)

    def seconds(self, packet) -> float:
        ts = packet.pts if packet.pts is not None else packet.dts
        if self.first_ts is None or ts is None or self.time_base is None:
            return 0.0
        return float((ts - self.first_ts) * self.time_base)

    def write(self, packet) -> None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        packet.stream = self.stream
        try:
            self.container.mux(packet)
        except (av.FFmpegError, ValueError) as exc:  # e.g. a timestamp going back: drop the packet
            log.debug("rtsp: packet not muxed into %s: %s", self.name, exc)
            return
        self.frames += 1

    def close(self, keep: bool) -> Spooled | None:
        try:
            self.container.close()
        except (av.FFmpegError, OSError):
            keep = False
        if not keep or self.frames == 0:
            self.temp.unlink(missing_ok=True)
            return None
        os.replace(self.temp, self.path)
        span = float((self.last_ts - self.first_ts) * self.time_base) if self.first_ts is not None else 0.0
        frame = span / max(1, self.frames - 1)
        return Spooled(self.sequence, self.name, self.start, round(span + frame, 3), self.frames, self.clock)


def _wall_clock(container, video, packet) -> tuple[datetime, str]:
    """When the packet was captured, by the stream's own clock when it has one: FFmpeg sets
    `start_time_realtime` (the wall time of timestamp 0, in microseconds) from the first RTCP sender
    report, a second or so into an RTSP stream. Else the packet's arrival time."""
    realtime = getattr(container, "start_time_realtime", None)
    ts = packet.pts if packet.pts is not None else packet.dts
    if realtime and ts is not None and video.time_base is not None:
        return datetime.fromtimestamp(realtime / 1e6 + float(ts * video.time_base), timezone.utc), "rtcp"
    return datetime.now(timezone.utc), "arrival"
