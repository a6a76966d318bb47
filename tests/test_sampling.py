"""Our window rule against GluonCV's own code, for every segment length that matters."""

import numpy as np
import pytest
from gluoncv.data import VideoClsCustom

from livewatch.model.sampling import cover_count, plan_windows, segment_indices, window_indices


class _RecordingReader:
    """Stands in for a decord VideoReader: remembers which frame ids GluonCV asks for."""

    def get_batch(self, frame_ids):
        self.frame_ids = list(frame_ids)
        return self

    def asnumpy(self):
        return np.zeros((len(self.frame_ids), 1, 1, 3), np.uint8)


def gluoncv_frame_ids(num_frames: int, new_length: int, new_step: int,
                      num_segments: int = 1) -> list[int]:
    dataset = VideoClsCustom(
        root="", setting="", train=False, test_mode=True, num_segments=num_segments,
        new_length=new_length, new_step=new_step, lazy_init=True,
    )
    offsets, skip_offsets = dataset._sample_test_indices(num_frames)
    reader = _RecordingReader()
    dataset._video_TSN_decord_batch_loader("segment.ts", reader, num_frames, offsets, skip_offsets)
    return reader.frame_ids


@pytest.mark.parametrize(("new_length", "new_step"), [(32, 1), (32, 2), (8, 3), (1, 1)])
def test_window_matches_gluoncv(new_length, new_step):
    for num_frames in [*range(1, 120), 250, 251, 300, 301, 599, 600]:
        assert window_indices(num_frames, new_length, new_step) == gluoncv_frame_ids(
            num_frames, new_length, new_step
        ), f"{num_frames} frames"


def test_ten_second_segment_takes_the_middle():
    assert window_indices(250) == list(range(109, 141))


def test_short_segment_repeats_its_second_to_last_frame():
    assert window_indices(12) == [*range(11), *[10] * 21]


def test_empty_segment_has_no_window():
    with pytest.raises(ValueError, match="at least one frame"):
        window_indices(0)


@pytest.mark.parametrize(("new_length", "new_step", "num_segments"), [(32, 2, 3), (32, 1, 5), (8, 3, 2)])
def test_n_windows_match_gluoncvs_num_segments(new_length, new_step, num_segments):
    for num_frames in [*range(1, 120), 250, 251, 300, 301, 599, 600]:
        windows = segment_indices(num_frames, new_length, new_step, num_segments)
        assert len(windows) == num_segments
        assert [i for w in windows for i in w] == gluoncv_frame_ids(
            num_frames, new_length, new_step, num_segments), f"{num_frames} frames"


@pytest.mark.parametrize(("new_length", "new_step"), [(32, 1), (32, 2), (8, 8), (16, 2)])
def test_cover_puts_every_frame_inside_some_windows_span(new_length, new_step):
    span = new_length * new_step
    for num_frames in range(1, 800):
        windows = plan_windows(num_frames, new_length, new_step, "cover")
        assert len(windows) == cover_count(num_frames, new_length, new_step)
        covered = set()
        for w in windows:
            covered.update(range(w[0], min(w[0] + span, num_frames)))
        assert covered == set(range(num_frames)), f"{num_frames} frames"
        assert [w[0] for w in windows] == sorted(w[0] for w in windows)  # in time order
        if num_frames >= span:
            assert windows[0][0] == 0 and windows[-1][0] + span == num_frames


def test_cover_counts_as_the_issue_says():
    """A 10 s, 30 fps segment at 32x2 gets 5 windows; at 32x1, 10."""
    assert cover_count(300, 32, 2) == 5 and cover_count(300, 32, 1) == 10
    assert len(plan_windows(300, 32, 2, "cover")) == 5


def test_center_is_gluoncvs_single_test_window():
    assert plan_windows(250, 32, 2, "center") == [window_indices(250, 32, 2)]
    with pytest.raises(ValueError, match="center"):
        plan_windows(250, 32, 2, 0)
