"""The built-in ``i3d`` classifier: a plugin like any other, off the event loop, same numbers as MXNet."""
import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from livewatch.contract import Segment
from livewatch.delivery import classify_segment
from livewatch.errors import ModelError, SegmentError
from livewatch.model.i3d_classifier import I3DClassifier
from livewatch.model.preprocess import to_tensor
from livewatch.model.video import decode_segment
from livewatch.plugins import Registry, make_plugin_manager
from livewatch.testing.models import TEST_CLASSES, reference_forward


@pytest.fixture(autouse=True)
def _private_model_cache(monkeypatch, tmp_path):
    """Nothing a test resolves lands in the user's own model cache."""
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "model-cache"))


def file_segment(path: Path) -> Segment:
    return Segment(uri=str(path), stream="cam1", open=lambda: open(path, "rb"), sequence=7)


class LoopWatch:
    """Counts the turns a 10 ms ticker gets on the event loop while the watched code runs, and
    the longest time it went without one (for the report; loaded machines stall the loop too)."""

    async def __aenter__(self):
        self.longest, self.ticks = 0.0, 0
        self._ticking = asyncio.Event()
        self.last = time.perf_counter()
        self._task = asyncio.create_task(self._tick())
        await self._ticking.wait()  # the ticker is running before the watched code starts
        self.ticks = 0
        return self

    async def _tick(self):
        while True:
            self._ticking.set()
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.longest = max(self.longest, now - self.last)
            self.last, self.ticks = now, self.ticks + 1

    async def __aexit__(self, *exc):
        self._task.cancel()
        self.longest = max(self.longest, time.perf_counter() - self.last)


class Threads:
    """Which threads opened segments and ran the model: the event loop's must be neither."""

    def __init__(self):
        self.loop = threading.get_ident()
        self.opened: list[int] = []
        self.predicted: list[int] = []

    def segment(self, path: Path) -> Segment:
        def opener():
            self.opened.append(threading.get_ident())
            return open(path, "rb")
        return Segment(uri=str(path), stream="cam1", open=opener, sequence=7)

    def watch_model(self, classifier: I3DClassifier) -> None:
        predict = classifier.model.predict

        def recording(batch):
            self.predicted.append(threading.get_ident())
            return predict(batch)

        classifier.model.predict = recording

    def assert_off_the_loop(self):
        assert self.opened and self.predicted, "the segment was never read or the model never ran"
        assert self.loop not in self.opened, "the segment was read on the event loop"
        assert self.loop not in self.predicted, "the model ran on the event loop"


def classifier_threads():
    return [t for t in threading.enumerate() if t.name.startswith("livewatch-")]


def test_i3d_registers_through_the_hook_with_validated_options():
    registered = Registry(make_plugin_manager(load_entry_points=False)).get("classifier", "i3d")
    assert registered.cls is I3DClassifier
    options = I3DClassifier.Options()
    assert (options.model, options.top_k, options.device) == ("i3d_resnet50_v1_ucf101", 5, "auto")
    for bad in ({"top_k": 0}, {"device": "tpu"}, {"threads": 0}, {"modle": "x"}):
        with pytest.raises(ValidationError):
            I3DClassifier.Options.model_validate(bad)


async def test_classify_matches_a_direct_mxnet_forward_and_never_blocks_the_loop(
    random_i3d_dir, video_factory
):
    video = video_factory("segment.ts", seconds=2, fps=25, size=(640, 360))  # 50 frames: 2 windows
    classifier = I3DClassifier(I3DClassifier.Options(model=str(random_i3d_dir), top_k=5, device="cpu"))
    threads = Threads()
    async with LoopWatch() as watch:
        try:
            await classifier.start()
            threads.watch_model(classifier)
            detection = await classifier.classify(threads.segment(video))
        finally:
            await classifier.close()
    threads.assert_off_the_loop()
    assert watch.ticks >= 3, f"the event loop turned {watch.ticks} times in {watch.longest:.2f}s"
    assert classifier_threads() == []

    decoded = decode_segment(video, windows="cover")
    per_window = reference_forward(random_i3d_dir, np.concatenate([to_tensor(f) for f in decoded.frames]))
    reference = per_window.mean(axis=0)  # the segment: the mean of its windows' probabilities
    best = reference.argsort()[::-1]
    assert detection.ok and (detection.uri, detection.stream, detection.sequence) == (str(video), "cam1", 7)
    assert detection.label == TEST_CLASSES[best[0]]
    assert detection.probability == pytest.approx(reference[best[0]], abs=1e-5)
    assert [(t.label, round(t.probability, 5)) for t in detection.top_k] == [
        (TEST_CLASSES[i], round(float(reference[i]), 5)) for i in best
    ]
    assert (detection.model.name, detection.model.version) == ("random-i3d", "seed0")
    assert [w.frames for w in detection.windows] == [[0, 31], [18, 48]]  # the 2nd ends on the last
    assert detection.frames == [i for w in decoded.windows for i in w.indices]
    for window, row in zip(detection.windows, per_window, strict=True):
        assert window.label == TEST_CLASSES[row.argmax()]
        assert window.probability == pytest.approx(row.max(), abs=1e-5)
    # The segment's label is the argmax of the mean of the windows' probabilities.
    mean = {c: np.mean([{t.label: t.probability for t in w.top_k}[c] for w in detection.windows])
            for c in TEST_CLASSES}
    assert detection.label == max(mean, key=mean.get)
    assert detection.decode_ms > 0 and detection.infer_ms > 0


async def test_a_segment_that_is_not_video_raises_segment_error(tiny_i3d_dir, tmp_path):
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"this is not an MPEG-TS segment" * 100)
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir)))
    await classifier.start()
    try:
        with pytest.raises(SegmentError):
            await classifier.classify(file_segment(junk))
    finally:
        await classifier.close()
    assert classifier_threads() == []


async def test_a_model_that_cannot_load_fails_start_and_closes_cleanly(tmp_path):
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tmp_path / "missing")))
    with pytest.raises(ModelError, match="does not exist"):
        await classifier.start()
    await classifier.close()
    assert classifier_threads() == []


async def test_classify_live_hls_segments_and_a_bad_file(tiny_i3d_dir, hls_stream, tmp_path):
    segments = sorted(hls_stream.glob("*.ts"))[1:]  # mid-stream: timestamps do not start at 0
    bad = tmp_path / "b.ts"
    bad.write_bytes(b"\x47" + b"\0" * 500)
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), top_k=2))
    await classifier.start()
    try:
        *good, failed = [
            await classify_segment(classifier, Segment(uri=str(p), stream=Path(p).parent.name,
                                                       open=lambda p=p: open(p, "rb")), 60)
            for p in [*segments, bad]
        ]
    finally:
        await classifier.close()
    for detection, segment in zip(good, segments, strict=True):
        assert detection.ok and detection.uri == str(segment) and detection.stream == "stream"
        assert detection.label in TEST_CLASSES and len(detection.top_k) == 2
        windows = decode_segment(segment, new_length=8, new_step=8, windows="cover",
                                 size=(171, 128)).windows
        assert detection.frames == [i for w in windows for i in w.indices]
        assert [(w.start, w.end) for w in detection.windows] == [(w.start, w.end) for w in windows]
        assert len(windows) == 4 and windows[0].start == 0 and windows[-1].end == 10.0
        assert detection.model.name == "tiny-i3d"
    assert not failed.ok and failed.uri == str(bad) and failed.error


async def test_asking_for_a_gpu_that_is_not_there(tiny_i3d_dir):
    import mxnet as mx

    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), device="gpu"))
    try:
        if mx.context.num_gpus():  # a machine with a GPU MXNet can use: the model loads there
            await classifier.start()
            return
        with pytest.raises(ModelError, match="device 'gpu' was requested but MXNet sees no GPU"):
            await classifier.start()
    finally:
        await classifier.close()


class BatchSizes:
    """Records the batch size of each forward pass the classifier's model runs."""

    def __init__(self, classifier: I3DClassifier):
        self.sizes: list[int] = []
        predict = classifier.model.predict

        def recording(batch):
            self.sizes.append(batch.shape[0])
            return predict(batch)

        classifier.model.predict = recording


async def test_segments_waiting_together_share_a_forward_pass_with_the_same_results(
    tiny_i3d_dir, hls_stream, tmp_path
):
    """Several segments in classification at once (daemon.workers > 1) go through the network as
    one batch, at most max_batch; each gets what it gets alone, and a bad one fails alone."""
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"\x47" + b"\0" * 500)
    paths = [*sorted(hls_stream.glob("*.ts")), bad, *sorted(hls_stream.glob("*.ts"))]
    segments = [file_segment(p) for p in paths]

    alone = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), max_batch=1))
    batched = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), max_batch=4))
    await alone.start()
    await batched.start()
    one_by_one, together = BatchSizes(alone), BatchSizes(batched)
    threads = Threads()
    threads.watch_model(batched)
    try:
        expected = [await classify_segment(alone, s, 60) for s in segments]
        async with LoopWatch() as watch:
            got = await asyncio.gather(*(classify_segment(batched, threads.segment(p), 60)
                                         for p in paths))
        assert await classify_segment(batched, segments[0], 60)  # a lone one is not held back
    finally:
        await alone.close()
        await batched.close()

    assert one_by_one.sizes == [4] * 6  # each segment's 4 windows are one batch
    assert together.sizes[:2] == [16, 8] and together.sizes[2:] == [4]  # 6 good, max_batch 4
    threads.assert_off_the_loop()
    assert watch.ticks >= 3, f"the event loop turned {watch.ticks} times in {watch.longest:.2f}s"
    for mine, theirs, path in zip(got, expected, paths, strict=True):
        assert mine.uri == theirs.uri == str(path)
        if path == bad:
            assert not mine.ok and mine.error == theirs.error
            continue
        assert mine.ok and mine.label == theirs.label and mine.frames == theirs.frames
        assert mine.probability == pytest.approx(theirs.probability, abs=1e-5)
        assert [t.label for t in mine.top_k] == [t.label for t in theirs.top_k]


async def test_a_classification_that_times_out_while_batched_leaves_the_rest_whole(
    tiny_i3d_dir, hls_stream
):
    segments = [file_segment(p) for p in sorted(hls_stream.glob("*.ts"))]
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), max_batch=3))
    await classifier.start()
    try:
        impatient = asyncio.create_task(classifier.classify(segments[0]))
        others = [asyncio.create_task(classifier.classify(s)) for s in segments[1:]]
        await asyncio.sleep(0)
        impatient.cancel()  # as daemon.segment_timeout does
        results = await asyncio.gather(*others)
        with pytest.raises(asyncio.CancelledError):
            await impatient
        assert [d.uri for d in results] == [s.uri for s in segments[1:]]
        assert all(d.ok for d in results)
    finally:
        await classifier.close()
    assert classifier_threads() == []
