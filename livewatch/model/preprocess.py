"""Frames to the model's input tensor, as GluonCV's ``VideoGroupValTransform`` makes it."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np

from livewatch.model.video import Clip, decode_clip

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def to_tensor(
    frames: np.ndarray, crop: int = 224, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames to a (1, 3, T, crop, crop) float32 tensor.

    Center crop with GluonCV's rounding (``int(round((W - crop) / 2))``, Python's round, so
    halves go to even), scale to [0, 1], normalise per channel. The crop is taken before
    converting, so only crop-sized float32 data is ever made, and the normalisation runs in place.
    """
    _, h, w, _ = frames.shape
    if h < crop or w < crop:
        raise ValueError(f"frames of {w}x{h} are smaller than the {crop}x{crop} crop")
    x1, y1 = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    cropped = frames[:, y1 : y1 + crop, x1 : x1 + crop, :]
    tensor = cropped.transpose(3, 0, 1, 2).astype(np.float32, order="C")  # the one copy
    tensor -= np.asarray(mean, dtype=np.float32).reshape(3, 1, 1, 1) * 255
    tensor /= np.asarray(std, dtype=np.float32).reshape(3, 1, 1, 1) * 255
    return tensor[np.newaxis]


def load_tensor(
    src: str | os.PathLike | BinaryIO, frames: int = 32, crop: int = 224
) -> tuple[np.ndarray, Clip]:
    """Decode a segment's window and make the model's input from it."""
    clip = decode_clip(src, new_length=frames)
    return to_tensor(clip.frames, crop), clip
