"""A segment's decoded frames made into its windows: concealment, refusal, times, truncation.

Pure numpy over what `video.decode_segment` decoded; nothing here reads media.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from livewatch.errors import SegmentError

MAX_MISSING = 0.25
"""A window with more than this share of its frames missing is refused, not concealed."""

TRUNCATION_SLACK = 0.02
"""A segment is truncated when it holds fewer frames than its stated duration by more than this
share (and more than one frame): playlists round their durations."""


@dataclass
class WindowSpan:
    """One window of a segment, as the model sees it."""

    indices: list[int]  # frame ids, `new_length` of them (GluonCV repeats the last at the end)
    start: float  # seconds from the segment's first frame (from PTS)
    end: float  # the end of its span: `new_length * new_step` frames from its first, at most the segment's end
    concealed: int = 0  # positions filled with the window's nearest decoded frame


@dataclass
class Decoded:
    """A segment's windows of frames, ready for `preprocess.to_tensor` one window at a time."""

    frames: np.ndarray  # uint8, (windows, T, height, width, 3) RGB at the requested size
    windows: list[WindowSpan]
    num_frames: int  # frames in the segment (from its first keyframe)
    fps: float | None
    width: int  # the source size
    height: int
    decode_ms: float
    expected_frames: int | None = None  # what the stated duration holds at `fps`, when known
    refused: list[str] = field(default_factory=list)  # windows left out, in words

    @property
    def concealed_frames(self) -> int:
        return sum(w.concealed for w in self.windows)

    @property
    def truncated(self) -> bool:
        if not self.expected_frames:
            return False
        slack = max(1, round(TRUNCATION_SLACK * self.expected_frames))
        return self.num_frames < self.expected_frames - slack

    @property
    def notes(self) -> list[str]:
        """What a user should know about how this segment was read, in words."""
        notes = []
        if self.truncated:
            notes.append(f"truncated: {self.num_frames} of the {self.expected_frames} frames its "
                         f"stated duration holds decoded; classified on what it holds")
        if self.concealed_frames:
            notes.append(f"{self.concealed_frames} frame(s) did not decode and were concealed "
                         f"with the nearest decoded frame of their window")
        notes += [f"window refused: {r}" for r in self.refused]
        return notes


def assemble(plan: list[list[int]], got: dict[int, np.ndarray], times: list[float], *,
             new_step: int, fps: float | None, stated_seconds: float | None,
             max_missing: float = MAX_MISSING, width: int, height: int,
             decode_ms: float) -> Decoded:
    """Fill each planned window from the decoded frames `got` (by frame id); `times` are every
    frame's seconds from the first. Raises SegmentError when every window is refused."""
    num_frames = len(times)
    frame_time = 1.0 / fps if fps else (float(np.median(np.diff(times))) if num_frames > 1 else 0.04)
    spans, stacks, refused = [], [], []
    for indices in plan:
        missing = sum(1 for i in indices if i not in got)
        if missing > max_missing * len(indices):
            refused.append(f"frames {indices[0]}-{indices[-1]}: {missing} of its {len(indices)} "
                           f"frames ({100 * missing / len(indices):.0f} %) did not decode; a window "
                           f"may lack at most {100 * max_missing:.0f} %")
            continue
        present = sorted({i for i in indices if i in got})
        stacks.append(np.stack([got[i] if i in got else got[_nearest(i, present)] for i in indices]))
        end_frame = indices[0] + len(indices) * new_step
        end = times[end_frame] if end_frame < num_frames else times[-1] + frame_time
        spans.append(WindowSpan(indices=list(indices), start=round(times[indices[0]], 6),
                                end=round(end, 6), concealed=missing))
    if not spans:
        raise SegmentError(f"could not decode: {refused[0]}" if len(refused) == 1 else
                           f"could not decode: every window has too much missing; {'; '.join(refused)}")
    expected = round(stated_seconds * fps) if stated_seconds and fps else None
    return Decoded(frames=np.stack(stacks), windows=spans, num_frames=num_frames, fps=fps,
                   width=width, height=height, decode_ms=decode_ms, expected_frames=expected,
                   refused=refused)


def _nearest(i: int, present: list[int]) -> int:
    """The decoded frame id nearest to `i` (the earlier one on a tie)."""
    return min(present, key=lambda j: (abs(j - i), j))
