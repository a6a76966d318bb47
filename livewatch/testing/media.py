"""Real H.264 test media made with PyAV: live HLS streams, single videos, and their fixtures.

The picture is a coloured texture panning sideways with a square bouncing over it, so every frame
differs from its neighbours and a window read one GOP late looks nothing like the right one.
Keyframes come every ``gop_seconds`` exactly (no scene-cut keyframes), as live encoders set them.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

_TS_OPTIONS = {"max_delay": "700000"}
"""FFmpeg's command-line default ``-muxdelay 0.7``: MPEG-TS timestamps then start at 1.4 s."""

_CONTAINERS = {".ts": "mpegts", ".mp4": "mp4"}


class _Scene:
    """The moving picture, frame by frame, scaled to the frame size (1080p shows what 360p does)."""

    def __init__(self, size: tuple[int, int]):
        self.width, self.height = size
        h = self.height
        self.period = h  # the texture repeats every `h` pixels across, so panning wraps seamlessly
        self.step = max(1, round(h / 90))  # pan speed, pixels per frame
        x = np.arange(self.width + self.period)[None, :] * (2 * np.pi / self.period)
        y = np.arange(h)[:, None] * (2 * np.pi / h)
        channels = [
            np.sin(3 * x) * np.cos(2 * y) + 0.5 * np.sin(11 * x + 7 * y) + 0.3 * np.sin(40 * y),
            np.sin(5 * x + 3 * y) + 0.5 * np.cos(17 * x) * np.sin(5 * y),
            np.cos(2 * x - 4 * y) + 0.4 * np.sin(29 * x + 13 * y),
        ]
        self.texture = np.stack([127 + 55 * c for c in channels], axis=-1).clip(0, 255).astype(np.uint8)
        self.side = h // 6

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as (height, width, 3) uint8 RGB."""
        x0 = (i * self.step) % self.period
        img = np.ascontiguousarray(self.texture[:, x0 : x0 + self.width])
        sx = _bounce(i, 70, self.width - self.side)
        sy = _bounce(i, 46, self.height - self.side)
        img[sy : sy + self.side, sx : sx + self.side] = (250, 240, 20)
        return img


def _bounce(i: int, period: int, span: int) -> int:
    """A triangle wave: 0 → span → 0 over `period` frames."""
    phase = (i % period) / period
    return round(span * (1 - abs(2 * phase - 1)))


def _frame_rate(fps: float | Fraction) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _x264_options(rate: Fraction, gop_seconds: float) -> dict[str, str]:
    gop = max(1, round(gop_seconds * rate))
    return {"preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}


class HlsWriter:
    """Plays a live HLS stream into a folder, one segment per `write_segment` call.

    It is one continuous encode: segment N's timestamps carry on from segment N-1, starting at
    N * seconds + 1.4 s as FFmpeg's MPEG-TS muxer writes them, not at 0. Each segment starts with
    a keyframe. Files appear the way a live encoder writes them (FFmpeg's ``hls_flags temp_file``):
    the segment is written under a temporary name and renamed, then the playlist is rewritten the
    same way, so a reader never sees half a file. ``window`` keeps only the last N segments in the
    playlist, as live playlists do; None keeps them all.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        seconds: float = 10.0,
        fps: float | Fraction = 25,
        size: tuple[int, int] = (640, 360),
        gop_seconds: float = 2.0,
        name: str = "stream",
        start_time: datetime | None = None,
        window: int | None = None,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.playlist = self.folder / f"{name}.m3u8"
        self.seconds = seconds
        self.rate = _frame_rate(fps)
        self.start_time = start_time or datetime.now(timezone.utc)
        self.window = window
        self.segments: list[Path] = []
        self._durations: list[float] = []
        self._scene = _Scene(size)
        self._encoder = av.CodecContext.create("libx264", "w")
        self._encoder.width, self._encoder.height = size
        self._encoder.pix_fmt = "yuv420p"
        self._encoder.time_base = 1 / self.rate
        self._encoder.framerate = self.rate
        # zerolatency: every frame's packet comes out at once, so a segment needs no encoder flush.
        self._encoder.options = {**_x264_options(self.rate, gop_seconds), "tune": "zerolatency"}

    def _first_frame(self, sequence: int) -> int:
        return round(sequence * self.seconds * self.rate)

    def write_segment(self) -> Path:
        """Encode the next segment, then list it in the playlist; return the segment's path."""
        sequence = len(self.segments)
        first, end = self._first_frame(sequence), self._first_frame(sequence + 1)
        path = self.folder / f"{self.name}{sequence:05d}.ts"
        temp = path.with_name(f".{path.name}.tmp")
        with av.open(str(temp), "w", format="mpegts", container_options=_TS_OPTIONS) as out:
            stream = out.add_stream("h264", rate=self.rate)
            stream.width, stream.height = self._encoder.width, self._encoder.height
            for i in range(first, end):
                frame = av.VideoFrame.from_ndarray(self._scene.frame(i), format="rgb24")
                frame.pts = i
                if i == first:
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in self._encoder.encode(frame):
                    packet.stream = stream
                    out.mux(packet)
        os.replace(temp, path)
        self.segments.append(path)
        self._durations.append(float((end - first) / self.rate))
        self._write_playlist()
        return path

    def _write_playlist(self) -> None:
        listed = range(len(self.segments))[-self.window :] if self.window else range(len(self.segments))
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{math.ceil(self.seconds)}",
            f"#EXT-X-MEDIA-SEQUENCE:{listed[0]}",
        ]
        for n in listed:
            start = self.start_time + timedelta(seconds=float(self._first_frame(n) / self.rate))
            lines += [
                f"#EXT-X-PROGRAM-DATE-TIME:{start.isoformat(timespec='milliseconds')}",
                f"#EXTINF:{self._durations[n]:.3f},",
                self.segments[n].name,
            ]
        temp = self.playlist.with_name(f".{self.playlist.name}.tmp")
        temp.write_text("\n".join(lines) + "\n")
        os.replace(temp, self.playlist)


def write_hls_stream(
    folder: str | os.PathLike,
    *,
    segments: int = 3,
    seconds: float = 10.0,
    fps: float | Fraction = 25,
    size: tuple[int, int] = (640, 360),
    gop_seconds: float = 2.0,
    name: str = "stream",
    start_time: datetime | None = None,
) -> list[Path]:
    """Write `segments` segments of one live stream and its playlist ``{name}.m3u8`` into `folder`."""
    writer = HlsWriter(
        folder, seconds=seconds, fps=fps, size=size, gop_seconds=gop_seconds, name=name,
        start_time=start_time,
    )
    return [writer.write_segment() for _ in range(segments)]


def write_video(
    path: str | os.PathLike,
    *,
    seconds: float,
    fps: float | Fraction = 25,
    size: tuple[int, int] = (640, 360),
    gop_seconds: float = 2.0,
    bframes: int = 0,
    preset: str = "ultrafast",
    first_frame: int = 0,
) -> Path:
    """Write one H.264 video of ``round(seconds * fps)`` frames (at least 1); .ts or .mp4 by suffix.

    ``bframes`` > 0 makes the decode order differ from the presentation order (with ``preset``
    ``"veryfast"``, as a live encoder sets x264: B-pyramid, adaptive B-frames). ``first_frame``
    starts the picture and the timestamps there, as a segment from the middle of a stream.
    """
    path = Path(path)
    if path.suffix not in _CONTAINERS:
        raise ValueError(f"{path.name}: use a .ts or .mp4 name")
    rate = _frame_rate(fps)
    x264 = {**_x264_options(rate, gop_seconds), "preset": preset}
    x264["x264-params"] += f":bframes={bframes}"
    scene = _Scene(size)
    container = _CONTAINERS[path.suffix]
    muxer = _TS_OPTIONS if container == "mpegts" else {}
    with av.open(str(path), "w", format=container, container_options=muxer) as out:
        stream = out.add_stream("libx264", rate=rate, options=x264)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(first_frame, first_frame + max(1, round(seconds * rate))):
            frame = av.VideoFrame.from_ndarray(scene.frame(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def _hls_stream_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hls") / "stream"
    write_hls_stream(folder, segments=3)
    return folder


@pytest.fixture
def hls_stream(_hls_stream_master: Path, tmp_path: Path) -> Path:
    """A folder holding a live stream: ``stream.m3u8`` and ``stream00000.ts`` … ``stream00002.ts``.

    Three 10 s segments, 640x360 at 25 fps, keyframes every 2 s; encoded once per session and
    copied for each test, so a test may change its copy.
    """
    return Path(shutil.copytree(_hls_stream_master, tmp_path / "stream"))


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    """``video_factory("clip.mp4", seconds=3, fps=..., size=...)`` writes a video into tmp_path."""

    def make(name: str, **options) -> Path:
        return write_video(tmp_path / name, **options)

    return make
