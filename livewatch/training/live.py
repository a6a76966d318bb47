"""A scripted live HLS stream: segment N shows the camera motion the script names for it.

A script entry ``"a>b"`` changes activity in the middle of the segment: its first half shows
motion ``a``, its second half ``b`` (`motion_at` says which frame shows what).

Segments appear as a live encoder writes them: under a temporary name, renamed when complete, then
listed in the playlist (rewritten the same way). Timestamps run on from segment to segment and
start at 1.4 s, as FFmpeg's MPEG-TS muxer writes them; each segment starts with a keyframe.
"""
from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av

from .synthetic import MotionScene, x264_options

_TS_OPTIONS = {"max_delay": "700000"}


class ScriptedStream:
    def __init__(self, folder: str | os.PathLike, script: list[str], *, seconds: float = 2.0,
                 fps: int = 15, size: tuple[int, int] = (128, 96), name: str = "stream",
                 seed: int = 1000, start_time: datetime | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.script = list(script)
        self.seconds, self.fps, self.size, self.name, self.seed = seconds, fps, size, name, seed
        self.frames = max(1, round(seconds * fps))
        self.playlist = self.folder / f"{name}.m3u8"
        self.start_time = start_time or datetime.now(timezone.utc)
        self.segments: list[Path] = []

    def write_segment(self) -> Path:
        """Encode the next scripted segment and list it; return its path."""
        n = len(self.segments)
        if n >= len(self.script):
            raise IndexError("the script has no more segments")
        parts = self.script[n].split(">")
        half = self.frames // len(parts)  # where the second motion, if any, takes over
        scenes = [MotionScene(motion, size=self.size, frames=self.frames - half if k else half,
                              seed=self.seed + n + 7919 * k) for k, motion in enumerate(parts)]
        path = self.folder / f"{self.name}{n:05d}.ts"
        temp = path.with_name(f".{path.name}.tmp")
        first = n * self.frames
        with av.open(str(temp), "w", format="mpegts", container_options=_TS_OPTIONS) as out:
            stream = out.add_stream("libx264", rate=Fraction(self.fps),
                                    options={**x264_options(self.fps), "tune": "zerolatency"})
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            for i in range(self.frames):
                picture = scenes[0].frame(i) if i < half or len(scenes) == 1 else scenes[1].frame(i - half)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = first + i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(temp, path)
        self.segments.append(path)
        self._write_playlist()
        return path

    def _write_playlist(self) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(self.seconds)}",
                 "#EXT-X-MEDIA-SEQUENCE:0"]
        for n, path in enumerate(self.segments):
            start = self.start_time + timedelta(seconds=n * self.frames / self.fps)
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:{start.isoformat(timespec='milliseconds')}",
                      f"#EXTINF:{self.frames / self.fps:.3f},", path.name]
        temp = self.playlist.with_name(f".{self.playlist.name}.tmp")
        temp.write_text("\n".join(lines) + "\n")
        os.replace(temp, self.playlist)


def motion_at(entry: str, frame: int, frames: int) -> str:
    """The motion a segment scripted as `entry` (``"a"`` or ``"a>b"``) shows at `frame`."""
    parts = entry.split(">")
    return parts[0] if len(parts) == 1 or frame < frames // 2 else parts[1]
