"""Which frames of a segment the model sees: GluonCV's test-time window, frame for frame."""
from __future__ import annotations  # also runs on the serving container's Python 3.8


def window_indices(num_frames: int, new_length: int = 32, new_step: int = 1) -> list[int]:
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
    if num_frames < 1:
        raise ValueError(f"a segment has at least one frame, got {num_frames}")
    span = new_length * new_step
    start = int((num_frames - span + 1) / 2.0) if num_frames >= span else 0
    # GluonCV moves its 1-based offset forward only while offset + new_step < num_frames.
    last = start + max(0, (num_frames - 2 - start) // new_step) * new_step
    return [min(start + i * new_step, last) for i in range(new_length)]
