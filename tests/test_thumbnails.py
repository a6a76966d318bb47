"""Thumbnails: a small JPEG of each window's middle frame, from the frames the classifier
already decoded (no second decode); ``thumbnails = false`` turns them off."""
import io

import numpy as np
from PIL import Image

from livewatch.model.i3d_classifier import I3DClassifier, I3DOptions
from livewatch.model.thumbnails import window_thumbnails
from livewatch.testing.doubles import fake_segment


def test_each_windows_middle_frame_becomes_a_jpeg():
    frames = np.zeros((2, 8, 128, 171, 3), np.uint8)
    frames[0, 4] = (200, 30, 30)  # window 0's middle frame is red, window 1's is green
    frames[1, 4] = (30, 200, 30)
    jpegs = window_thumbnails(frames)
    images = [np.asarray(Image.open(io.BytesIO(j))) for j in jpegs]
    assert [i.shape for i in images] == [(128, 171, 3)] * 2
    assert images[0].mean(axis=(0, 1)).argmax() == 0 and images[1].mean(axis=(0, 1)).argmax() == 1


async def test_the_classifier_keeps_one_per_window_unless_turned_off(tiny_i3d_dir, video_factory):
    clip = video_factory("seg.ts", seconds=3.0, size=(320, 180))
    for enabled in (True, False):
        classifier = I3DClassifier(I3DOptions(model=str(tiny_i3d_dir), thumbnails=enabled))
        await classifier.start()
        try:
            detection = await classifier.classify(fake_segment(clip))
        finally:
            await classifier.close()
        thumbs = [w.thumbnail for w in detection.windows]
        assert len(thumbs) == 2
        if enabled:
            assert all(t.startswith(b"\xff\xd8") and len(t) < 20_000 for t in thumbs)
            assert Image.open(io.BytesIO(thumbs[0])).size == (171, 128)  # the model's resize
        else:
            assert thumbs == [None, None]
