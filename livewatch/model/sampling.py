"""Which frames of a segment the model sees: GluonCV's test-time windows, frame for frame.

A segment gives one window (``"center"``, GluonCV's test window), ``N`` windows (GluonCV's
``num_segments=N`` test sampling) or enough windows to cover every frame (``"cover"``). Each
window is ``new_length`` frame ids taken every ``new_step`` frames, as GluonCV's loader reads them.
"""
from __future__ import annotations  # also runs on the serving container's Python 3.8

import math
from typing import List, Union

Windows = Union[str, int]
"""``"center"``, ``"cover"`` or a number of windows (``classifier.windows``)."""


def _clip(start: int, num_frames: int, new_length: int, new_step: int) -> List[int]:
    """GluonCV's index loop from 0-based frame `start`: advance `new_step` at a time, but only
    while the next position is below ``num_frames - 1`` (GluonCV counts frames from 1 there);
    past that, repeat the frame it reached."""
    last = start + max(0, (num_frames - 2 - start) // new_step) * new_step
    return [min(start + i * new_step, last) for i in range(new_length)]


def window_indices(num_frames: int, new_length: int = 32, new_step: int = 1) -> List[int]:
    """Return the 0-based frame ids GluonCV's loader reads for one clip of a segment.

    This is ``VideoClsCustom._sample_test_indices`` followed by the index loop of
    ``_video_TSN_decord_batch_loader`` with ``num_segments=1`` and no temporal jitter:

    - The window starts at ``int((num_frames - new_length * new_step + 1) / 2)``, the middle of
      the segment, or at frame 0 when the segment is shorter than the window.
    - It then advances ``new_step`` frames at a time, but only while the next position is below
      ``num_frames - 1`` (GluonCV counts frames from 1 there); past that it repeats the frame it
      reached. So a short segment repeats its second-to-last frame, never reading its last one,
      and a 1- or 2-frame segment gives frame 0 throughout.
    """
    return segment_indices(num_frames, new_length, new_step, 1)[0]


def segment_indices(num_frames: int, new_length: int = 32, new_step: int = 1,
                    num_segments: int = 1) -> List[List[int]]:
    """GluonCV's ``num_segments`` test windows: the segment less one window's span cut into
    `num_segments` equal ticks, a window starting in the middle of each (all at 0 when the segment
    is shorter than one window)."""
    if num_frames < 1:
        raise ValueError(f"a segment has at least one frame, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"at least one window per segment, got {num_segments}")
    span = new_length * new_step
    if num_frames >= span:
        tick = (num_frames - span + 1) / float(num_segments)
        starts = [int(tick / 2.0 + tick * k) for k in range(num_segments)]
    else:
        starts = [0] * num_segments
    return [_clip(s, num_frames, new_length, new_step) for s in starts]


def cover_count(num_frames: int, new_length: int = 32, new_step: int = 1) -> int:
    """``"cover"``'s number of windows: ``ceil(num_frames / (new_length * new_step))``."""
    return max(1, math.ceil(num_frames / (new_length * new_step)))


def cover_indices(num_frames: int, new_length: int = 32, new_step: int = 1) -> List[List[int]]:
    """Windows spread evenly from the segment's first frame to its last, so that every frame lies
    within some window's span (``new_length * new_step`` frames from its first): the first starts
    at frame 0, the last ends on the last frame, the starts between are rounded evenly."""
    if num_frames < 1:
        raise ValueError(f"a segment has at least one frame, got {num_frames}")
    span, count = new_length * new_step, cover_count(num_frames, new_length, new_step)
    if count == 1:
        return [_clip(0, num_frames, new_length, new_step)]
    gap = (num_frames - span) / (count - 1)  # <= span, since count * span >= num_frames
    return [_clip(int(round(gap * k)), num_frames, new_length, new_step) for k in range(count)]


def plan_windows(num_frames: int, new_length: int = 32, new_step: int = 1,
                 windows: Windows = "center") -> List[List[int]]:
    """The frame ids of each window `windows` asks for, in time order."""
    if windows == "center":
        return segment_indices(num_frames, new_length, new_step, 1)
    if windows == "cover":
        return cover_indices(num_frames, new_length, new_step)
    if isinstance(windows, int) and not isinstance(windows, bool) and windows >= 1:
        return segment_indices(num_frames, new_length, new_step, windows)
    raise ValueError(f'windows is "center", "cover" or a number of windows >= 1, got {windows!r}')
