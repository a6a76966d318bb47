"""Windows sampled from a user's own video files, to check or calibrate a backend against MXNet
fp32 (``livewatch model quantize --calibrate DIR``, ``backend = "auto"`` with ``check_segments``).

Not the classifier's decoding path (`video`): every frame of a file is decoded in order and
resized as the model's metadata says, and the windows are spread evenly through the file. What
matters here is pictures like the user's, not the segment's exact timing.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .artifacts import ModelArtifact

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".ts", ".mp4", ".m4s", ".mkv", ".mov", ".avi", ".webm")


def video_files(folder: Path) -> list[Path]:
    """The video files under `folder` (searched recursively), by name."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


def spread_windows(artifact: ModelArtifact, path: Path, per_segment: int) -> Iterator[np.ndarray]:
    """`per_segment` windows evenly spread through `path`: (T, crop, crop, 3) uint8 each. A file
    that is not video, or has no frames, gives none (with a warning)."""
    import av

    meta = artifact.meta
    try:
        with av.open(str(path)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24", width=meta.resize[0], height=meta.resize[1])
                               for f in container.decode(container.streams.video[0])])
    except (av.FFmpegError, ValueError, IndexError) as exc:  # not video, no video stream, no frames
        log.warning("skipping %s: %s", path, exc)
        return
    h, w = frames.shape[1:3]
    y, x = int(round((h - meta.crop) / 2.0)), int(round((w - meta.crop) / 2.0))
    frames = frames[:, y: y + meta.crop, x: x + meta.crop]
    last = max(0, len(frames) - meta.frames)
    for start in sorted(set(np.linspace(0, last, per_segment).round().astype(int))):
        window = frames[start: start + meta.frames]
        if len(window) < meta.frames:  # a short video: repeat its last frame, as the classifier
            window = np.concatenate([window, window[-1:].repeat(meta.frames - len(window), 0)])
        yield window
