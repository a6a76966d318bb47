"""Our window rule against GluonCV's own code, for every segment length that matters."""

import numpy as np
import pytest
from gluoncv.data import VideoClsCustom

from livewatch.model.sampling import window_indices


class _RecordingReader:
    """Stands in for a decord VideoReader: remembers which frame ids GluonCV asks for."""

    def get_batch(self, frame_ids):
        self.frame_ids = list(frame_ids)
        return self

    def asnumpy(self):
        return np.zeros((len(self.frame_ids), 1, 1, 3), np.uint8)


def gluoncv_frame_ids(num_frames: int, new_length: int, new_step: int) -> list[int]:
    dataset = VideoClsCustom(
        root="", setting="", train=False, test_mode=True,
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
