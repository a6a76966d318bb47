"""`gpu_check`'s clips: varied model inputs, so that agreement is measured on more than one picture.

Half are windows of the decoded segments (two resolutions, 32x1 and 32x2, several offsets, some
mirrored); half are synthetic (`livewatch.testing.media`'s moving picture at several points, and
still, mirrored, dimmed, brightened, noisy, inverted and channel-swapped versions of it). The
calibration clips are synthetic windows from elsewhere in the picture, none of them scored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from livewatch.model.preprocess import to_tensor
from livewatch.testing.media import _Scene

VARIANTS = ("moving", "still", "mirrored", "dimmed", "bright", "noisy", "inverted", "swapped")


def make_clips(segments: dict[str, list[Path]], *, frames: int, crop: int, resize: tuple[int, int],
               count: int, calibration: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(calibration clips, `count` scored clips, how many of each kind) as (N, 3, T, crop, crop)."""
    rng = np.random.default_rng(1)
    decoded = [_all_frames(files[0], resize) for files in segments.values()]
    windows = []
    per_video = max(1, (count // 2) // len(decoded))
    for video in decoded:
        for k in range(per_video):
            step = 1 + k % 2
            span = (frames - 1) * step + 1
            start = round(k / max(1, per_video - 1) * max(0, len(video) - span))
            clip = video[start:start + span:step]
            clip = np.concatenate([clip, np.repeat(clip[-1:], frames - len(clip), 0)])
            windows.append(clip[:, :, ::-1] if k % 3 == 2 else clip)
    scene = _Scene(resize)
    synthetic = [_synthetic(scene, VARIANTS[k % len(VARIANTS)], 37 * k, frames, rng)
                 for k in range(count - len(windows))]
    calib = [_synthetic(scene, VARIANTS[k % 2 * 5], 5000 + 113 * k, frames, rng)  # moving, noisy
             for k in range(calibration)]

    def tensors(clips):
        return np.concatenate([to_tensor(np.ascontiguousarray(c), crop=crop) for c in clips])

    return tensors(calib), tensors(windows + synthetic), {"decoded_windows": len(windows),
                                                          "synthetic": len(synthetic)}


def _synthetic(scene: _Scene, variant: str, start: int, frames: int, rng) -> np.ndarray:
    if variant == "still":
        clip = np.stack([scene.frame(start)] * frames)
    else:
        clip = np.stack([scene.frame(start + 2 * i) for i in range(frames)])
    if variant == "mirrored":
        clip = clip[:, :, ::-1]
    elif variant == "dimmed":
        clip = (clip * 0.4).astype(np.uint8)
    elif variant == "bright":
        clip = np.minimum(clip.astype(np.uint16) + 90, 255).astype(np.uint8)
    elif variant == "noisy":
        clip = np.clip(clip + rng.normal(0, 25, clip.shape), 0, 255).astype(np.uint8)
    elif variant == "inverted":
        clip = 255 - clip
    elif variant == "swapped":
        clip = clip[..., ::-1]
    return clip


def _all_frames(path: Path, resize: tuple[int, int]) -> np.ndarray:
    import av

    from livewatch.model.video import RgbScaler

    scale = RgbScaler(*resize)
    with av.open(str(path)) as container:
        return np.stack([scale(f) for f in container.decode(video=0)])
