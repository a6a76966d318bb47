"""The i3d classifier decodes the next segment while the model thread runs this one's forward pass
(``decode_threads``), and `close` in the middle of both leaves nothing behind.

Ordering, not timing: the model's forward pass is held on an event until the test has seen what
it waits for, with a generous timeout so a broken overlap fails instead of hanging.
"""
import asyncio
import threading
from pathlib import Path

import pytest

from livewatch.contract import Segment
from livewatch.model import i3d_classifier
from livewatch.model.i3d_classifier import I3DClassifier

PATIENCE = 60.0  # seconds a held thread waits for what the test promised; reached only when broken


@pytest.fixture(autouse=True)
def _private_model_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEWATCH_CACHE_DIR", str(tmp_path / "model-cache"))


def segment(path: Path, name: str) -> Segment:
    return Segment(uri=f"{path}#{name}", stream="cam1", open=lambda: open(path, "rb"))


class Journal:
    """What happened, in order, across threads: ("decoded", name, thread) and ("forward+"/
    "forward-", names, thread) entries; `prepare` and the model's `predict` write it."""

    def __init__(self, monkeypatch, classifier: I3DClassifier):
        self.entries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self.decoded = {}  # name -> threading.Event set once its decode returned
        self.forward_began = threading.Event()
        self.release_forward = threading.Event()  # the test lets the first forward pass end
        self.hold_decode: dict[str, threading.Event] = {}  # name -> event its decode waits for
        self.decoding = threading.Event()  # a held decode began
        prepare = i3d_classifier.prepare

        def recording_prepare(model, seg, options=None):
            name = seg.uri.rpartition("#")[2]
            if name in self.hold_decode:
                self.decoding.set()
                assert self.hold_decode[name].wait(PATIENCE), f"{name}'s decode was never released"
            out = prepare(model, seg, options)
            self.log("decoded", name)
            self.decoded.setdefault(name, threading.Event()).set()
            return out

        monkeypatch.setattr(i3d_classifier, "prepare", recording_prepare)
        predict = classifier.model.predict

        def held_predict(batch):
            first = not self.forward_began.is_set()
            self.log("forward+", str(len(batch)))
            self.forward_began.set()
            if first:
                self.release_forward.wait(PATIENCE)
            out = predict(batch)
            self.log("forward-", str(len(batch)))
            return out

        classifier.model.predict = held_predict

    def log(self, what: str, name: str) -> None:
        with self._lock:
            self.entries.append((what, name, threading.current_thread().name))

    def event(self, name: str) -> threading.Event:
        return self.decoded.setdefault(name, threading.Event())


async def test_the_next_segment_decodes_while_this_one_is_in_its_forward_pass(
    tiny_i3d_dir, hls_stream, monkeypatch
):
    """As the daemon does it with 2 workers: the second segment arrives once the first is in its
    forward pass, decodes meanwhile, and the first pass ends only after that decode did."""
    path = sorted(hls_stream.glob("*.ts"))[1]
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), decode_threads=1))
    await classifier.start()
    journal = Journal(monkeypatch, classifier)
    try:
        first = asyncio.create_task(classifier.classify(segment(path, "A")))
        assert await asyncio.to_thread(journal.forward_began.wait, PATIENCE)
        second = asyncio.create_task(classifier.classify(segment(path, "B")))
        # The first forward pass is still held; B's decode must finish regardless.
        overlapped = await asyncio.to_thread(journal.event("B").wait, PATIENCE)
        journal.release_forward.set()
        a, b = await asyncio.gather(first, second)
    finally:
        journal.release_forward.set()
        await classifier.close()
    assert overlapped, "B was not decoded while A's forward pass ran"
    assert [e[:2] for e in journal.entries] == [
        ("decoded", "A"), ("forward+", "4"), ("decoded", "B"), ("forward-", "4"),
        ("forward+", "4"), ("forward-", "4")]  # 4 windows a segment
    threads = {what: thread for what, _, thread in journal.entries}
    assert threads["decoded"].startswith(f"livewatch-{classifier.instance}-decode")
    assert threads["forward+"].startswith(f"livewatch-{classifier.instance}_")  # the model thread
    assert a.ok and b.ok and a.label == b.label and a.probability == pytest.approx(b.probability)
    assert [t for t in threading.enumerate() if t.name.startswith("livewatch-")] == []


async def test_decode_threads_0_decodes_on_the_model_thread(tiny_i3d_dir, hls_stream, monkeypatch):
    path = sorted(hls_stream.glob("*.ts"))[1]
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), decode_threads=0))
    await classifier.start()
    journal = Journal(monkeypatch, classifier)
    journal.release_forward.set()
    try:
        detections = await asyncio.gather(*(classifier.classify(segment(path, n)) for n in "AB"))
    finally:
        await classifier.close()
    assert all(d.ok for d in detections)
    assert len({thread for *_, thread in journal.entries}) == 1  # one thread did it all


async def test_close_while_a_forward_pass_and_decodes_are_pending_leaves_nothing_behind(
    tiny_i3d_dir, hls_stream, monkeypatch
):
    """A in its forward pass, B decoding, C queued for the decoder: close cancels all three
    callers, waits for the running pass and decode to return, and leaves no task or thread."""
    path = sorted(hls_stream.glob("*.ts"))[1]
    classifier = I3DClassifier(I3DClassifier.Options(model=str(tiny_i3d_dir), decode_threads=1))
    await classifier.start()
    journal = Journal(monkeypatch, classifier)
    journal.hold_decode["B"] = threading.Event()
    theirs = asyncio.all_tasks()
    try:
        a = asyncio.create_task(classifier.classify(segment(path, "A")))
        assert await asyncio.to_thread(journal.forward_began.wait, PATIENCE)
        b = asyncio.create_task(classifier.classify(segment(path, "B")))
        c = asyncio.create_task(classifier.classify(segment(path, "C")))
        assert await asyncio.to_thread(journal.decoding.wait, PATIENCE)  # B's, held; C waits
        closing = asyncio.create_task(classifier.close())
        await asyncio.sleep(0)  # close has begun: it cancelled A's pass, nothing new starts
        assert not closing.done()  # it waits for the decode and the pass still running
        journal.hold_decode["B"].set()
        journal.release_forward.set()
        await closing
    finally:
        journal.hold_decode["B"].set()
        journal.release_forward.set()
        await classifier.close()
    for caller in (a, b, c):
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert [e[:2] for e in journal.entries] == [
        ("decoded", "A"), ("forward+", "4"), ("decoded", "B"), ("forward-", "4")]  # C never ran
    assert not classifier._batches and not classifier._ready
    assert asyncio.all_tasks() - theirs == set()
    assert [t for t in threading.enumerate() if t.name.startswith("livewatch-")] == []
    with pytest.raises(RuntimeError, match="not started"):
        await classifier.classify(segment(path, "D"))
