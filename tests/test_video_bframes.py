"""Decoding a live encoder's B-frame segment: skipping the non-reference frames before the window
changes no pixel of the window (HlsWriter's test segments have no B-frames, so this makes its own)."""
from fractions import Fraction

import av
import numpy as np

from livewatch.model.sampling import window_indices
from livewatch.model.video import BILINEAR, decode_clip
from livewatch.testing import media


def write_bframe_segment(path, seconds=4, fps=25, size=(320, 180), first=250):
    """x264 ``veryfast`` (3 B-frames, B-pyramid), keyframe every second, timestamps not at 0."""
    scene = getattr(media, "Scene", None) or media._Scene  # the test media's moving picture
    scene = scene(size)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={
            "preset": "veryfast", "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0"})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(first, first + seconds * fps):
            frame = av.VideoFrame.from_ndarray(scene.frame(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def full_decode(path, size=(340, 256)):
    """Every frame, in presentation order, scaled as decode_clip scales them."""
    with av.open(str(path)) as container:
        frames = [f.reformat(*size, "rgb24", interpolation=BILINEAR).to_ndarray()
                  for f in container.decode(video=0)]
    return frames


def test_the_window_of_a_bframe_segment_matches_a_full_decode(tmp_path):
    path = write_bframe_segment(tmp_path / "seg.ts")
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context
        assert codec.has_b_frames, "the encoder wrote no B-frames: the test would prove nothing"
    everything = full_decode(path)
    clip = decode_clip(path, new_length=16)
    assert clip.indices == window_indices(len(everything), 16)
    assert clip.indices[0] > 25  # the window starts after the first GOP: frames are skipped
    np.testing.assert_array_equal(clip.frames, np.stack([everything[i] for i in clip.indices]))
