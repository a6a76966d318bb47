"""Training and validation clips from GluonCV setting files, decoded as the daemon decodes them.

Videos are decoded with PyAV and resized by FFmpeg's bilinear scaler exactly as
`livewatch.model.video` does it (decord, GluonCV's default reader, mis-indexes MPEG-TS and is not
what the daemon runs). Training clips are `frames` consecutive frames from a random start, through
GluonCV's ``VideoGroupTrainTransform`` (multi-scale crop, optional horizontal flip, normalise);
validation clips are the daemon's own window (`sampling.window_indices`) through the daemon's own
`preprocess.to_tensor`, which matches GluonCV's ``VideoGroupValTransform``.

Decoded videos are kept in memory up to `cache_mb`; beyond that they are decoded again per epoch.
"""
from __future__ import annotations

import os
import random
from collections import OrderedDict
from pathlib import Path

import av
import numpy as np

from livewatch.model.preprocess import MEAN, STD, to_tensor
from livewatch.model.sampling import window_indices
from livewatch.model.video import RgbScaler

# Horizontal flips turn a pan left into a pan right: off unless the classes do not care.
SCALE_RATIOS = (1.0, 0.875, 0.75)


def decode_all(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """Every frame of a video, (T, height, width, 3) uint8 RGB at `size` (width, height)."""
    scale = RgbScaler(*size)  # the daemon's scaler: same pixels, no swscale thread pool
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = [scale(frame) for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(frames)


class ClipDataset:
    """(clip, label) pairs: clip is (3, frames, crop, crop) float32, normalised."""

    def __init__(self, root: str | os.PathLike, rows: list[tuple[str, int, int]], *, frames: int,
                 crop: int, step: int = 1, resize: tuple[int, int], train: bool, flip_prob: float = 0.0,
                 mean=MEAN, std=STD, cache_mb: int = 1024, seed: int = 0):
        self.root = Path(root)
        self.rows = rows
        self.frames, self.step, self.crop, self.resize = frames, step, crop, tuple(resize)
        self.train = train
        self.mean, self.std = tuple(mean), tuple(std)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes, self._cache_limit = 0, cache_mb * 2**20
        self._rng = random.Random(seed)
        self._transform = None
        if train:
            from gluoncv.data.transforms.video import VideoGroupTrainTransform

            random.seed(seed)  # the transform draws from the `random` module
            self._transform = VideoGroupTrainTransform(
                size=(crop, crop), scale_ratios=list(SCALE_RATIOS), mean=list(mean), std=list(std),
                prob=flip_prob)

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> list[int]:
        return [label for _, _, label in self.rows]

    def _video(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        video = decode_all(self.root / self.rows[i][0], self.resize)
        self._cache[i] = video
        self._cache_bytes += video.nbytes
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return video

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        video = self._video(i)
        n = len(video)
        label = self.rows[i][2]
        if not self.train:
            return to_tensor(video[window_indices(n, self.frames, self.step)], self.crop, self.mean,
                             self.std)[0], label
        start = self._rng.randint(0, max(0, n - self.frames * self.step))
        idx = [min(start + k * self.step, n - 1) for k in range(self.frames)]
        clip = self._transform([video[k] for k in idx])  # list of (3, crop, crop)
        return np.stack(clip, axis=1).astype(np.float32), label

    def batches(self, batch_size: int, shuffle: bool):
        """(data (N, 3, T, crop, crop), labels (N,)) numpy batches over the whole set."""
        order = list(range(len(self)))
        if shuffle:
            self._rng.shuffle(order)
        for k in range(0, len(order), batch_size):
            items = [self[i] for i in order[k:k + batch_size]]
            yield np.stack([x for x, _ in items]), np.array([y for _, y in items], np.float32)
