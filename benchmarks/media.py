"""The benchmark's segments: 10 s of a live HLS stream (H.264 in MPEG-TS, keyframe every 2 s, the
moving textured picture of `livewatch.testing.media`) at each resolution, written once and reused.

Two encoder profiles, because what a decoder costs depends on it far more than on the resolution:

- ``live`` (the headline figures): x264 ``veryfast`` with its defaults (High profile, CABAC,
  deblocking, 3 B-frames), as FFmpeg-based live encoders are commonly run;
- ``lowlatency``: `livewatch.testing.media.HlsWriter` as the tests use it (``ultrafast`` +
  ``zerolatency``: no CABAC, no deblocking, no B-frames), about 3x cheaper to decode.

Either way segment N's timestamps carry on from segment N-1, starting at N * 10 s + 1.4 s as
FFmpeg's MPEG-TS muxer writes them; the benchmark uses segments 1.. so no pipeline gets segment
0's timestamps near zero.
"""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

from livewatch.testing.media import HlsWriter, write_video

#: name -> ((width, height), fps)
RESOLUTIONS: dict[str, tuple[tuple[int, int], int]] = {
    "360p": ((640, 360), 25),
    "720p": ((1280, 720), 30),
    "1080p": ((1920, 1080), 30),
}
PROFILES = ("live", "lowlatency")
SEGMENT_SECONDS = 10
GOP_SECONDS = 2
SEGMENTS = 4
LIVE_PRESET = "veryfast"
LIVE_BFRAMES = 3  # x264 veryfast's own default, said out loud


def ensure_media(cache: Path, names: list[str], profile: str = "live",
                 segments: int = SEGMENTS) -> dict[str, list[Path]]:
    """The segment files of each resolution in `names`, writing any that are missing."""
    out = {}
    for name in names:
        size, fps = RESOLUTIONS[name]
        folder = cache / profile / name
        stamp = folder / "params.json"
        params = {"size": list(size), "fps": fps, "seconds": SEGMENT_SECONDS, "gop": GOP_SECONDS,
                  "segments": segments, "profile": profile,
                  "x264": {"preset": LIVE_PRESET} if profile == "live" else "HlsWriter"}
        files = [folder / f"seg{i:05d}.ts" for i in range(segments)]
        if not (stamp.is_file() and json.loads(stamp.read_text()) == params and all(f.is_file() for f in files)):
            folder.mkdir(parents=True, exist_ok=True)
            if profile == "live":
                files = [write_live_segment(folder / f"seg{i:05d}.ts", i, size, fps) for i in range(segments)]
            else:
                writer = HlsWriter(folder, seconds=SEGMENT_SECONDS, fps=Fraction(fps), size=size,
                                   gop_seconds=GOP_SECONDS, name="seg")
                files = [writer.write_segment() for _ in range(segments)]
            stamp.write_text(json.dumps(params))
        out[name] = files
    return out


def write_live_segment(path: Path, sequence: int, size: tuple[int, int], fps: int) -> Path:
    """Segment `sequence` of a stream from a B-frame live encoder: one encode per segment,
    flushed at its end, starting with an IDR frame, timestamps continuing the stream's."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write_video(tmp, seconds=SEGMENT_SECONDS, fps=fps, size=size, gop_seconds=GOP_SECONDS,
                bframes=LIVE_BFRAMES, preset=LIVE_PRESET, first_frame=sequence * SEGMENT_SECONDS * fps)
    os.replace(tmp, path)
    return path
