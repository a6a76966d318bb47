"""Decoding a live encoder's B-frame segment: skipping the non-reference frames before the window
changes no pixel of the window (HlsWriter's test segments have no B-frames, so this makes its own)."""
import av
import numpy as np

from livewatch.model.sampling import window_indices
from livewatch.model.video import BILINEAR, decode_clip
from livewatch.testing.media import write_video


def full_decode(path, size=(340, 256)):
    """Every frame, in presentation order, scaled as decode_clip scales them."""
    with av.open(str(path)) as container:
        frames = [f.reformat(*size, "rgb24", interpolation=BILINEAR).to_ndarray()
                  for f in container.decode(video=0)]
    return frames


def test_the_window_of_a_bframe_segment_matches_a_full_decode(tmp_path):
    # x264 as a live encoder runs it (3 B-frames, B-pyramid), a keyframe every second,
    # timestamps not at 0.
    path = write_video(tmp_path / "seg.ts", seconds=4, fps=25, size=(320, 180), gop_seconds=1,
                       bframes=3, preset="veryfast", first_frame=250)
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context
        assert codec.has_b_frames, "the encoder wrote no B-frames: the test would prove nothing"
    everything = full_decode(path)
    clip = decode_clip(path, new_length=16)
    assert clip.indices == window_indices(len(everything), 16)
    assert clip.indices[0] > 25  # the window starts after the first GOP: frames are skipped
    np.testing.assert_array_equal(clip.frames, np.stack([everything[i] for i in clip.indices]))
