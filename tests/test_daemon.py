"""The daemon's delivery rules, driven in-process with small components that record what happens.

The classifier here reads each segment's bytes in an executor and labels it with their text (or
fails the way the text says), so every delivery path can be provoked on purpose; the sink is the
real local store.
"""
import asyncio
import threading
import time

import pytest

from livewatch.components import Classifier, Sink, Source
from livewatch.contract import Detection
from livewatch.daemon import Daemon
from livewatch.errors import ModelError, SegmentError, TransientError
from livewatch.settings import DaemonSettings
from livewatch.sinks.local import LocalSink, LocalStore
from livewatch.testing import ListSource


async def until(condition, timeout=20.0, what="the condition"):
    """Poll `condition()` until it is true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.01)


class TextClassifier(Classifier):
    """Label = the segment's text. `empty` -> SegmentError, `flaky` -> TransientError once,
    `oom` -> ModelError and `crash` -> RuntimeError every time, `slow:<s>` sleeps in the executor
    first, `gate` waits in the executor until `gate` is set (`entered` tells the test that such a
    segment is in classification)."""

    name = "text"

    def __init__(self):
        super().__init__()
        self.flaky_seen = set()
        self.running = 0
        self.max_running = 0
        self.gate = threading.Event()
        self.entered = asyncio.Event()

    def _read(self, segment, loop):
        data = segment.open().read().decode()
        if data.startswith("slow:"):
            time.sleep(float(data.split(":")[1]))
        if data == "gate":
            loop.call_soon_threadsafe(self.entered.set)
            assert self.gate.wait(30), "the test never opened the gate"
        return data

    async def classify(self, segment):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, self._read, segment, loop)
        finally:
            self.running -= 1
        if not data:
            raise SegmentError("segment is empty (0 bytes)")
        if data == "flaky" and segment.uri not in self.flaky_seen:
            self.flaky_seen.add(segment.uri)
            raise TransientError("model server busy")
        if data == "oom":
            raise ModelError("model x failed on a (1, 3, 8, 112, 112) batch: out of memory")
        if data == "crash":
            raise RuntimeError("backend crashed")
        return Detection.for_segment(segment, label=data, probability=1.0)


class RecordingSink(Sink):
    """Wraps the real local store; can fail its first `failures` writes (transiently or not)."""

    name = "recording"

    def __init__(self, path, events, failures=0, transient=True):
        super().__init__()
        self.inner = LocalSink(LocalSink.Options(path=path))
        self.events, self.failures, self.transient = events, failures, transient
        self.attempts = 0

    async def start(self):
        await self.inner.start()

    async def close(self):
        await self.inner.close()

    async def write(self, detection):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise (TransientError if self.transient else RuntimeError)("table is throttled")
        await self.inner.write(detection)
        self.events.append(("write", detection.uri))


def rows(path):
    store = LocalStore(path)
    try:
        return {d.uri: d for d in store.query()}
    finally:
        store.close()


async def run_daemon(payloads, tmp_path, *, failures=0, transient=True, **settings):
    events = []
    source = ListSource(payloads, events=events)
    sink = RecordingSink(tmp_path / "d.db", events, failures, transient)
    daemon = Daemon([source], TextClassifier(), [sink],
                    DaemonSettings(**{"sink_retries": 3, **settings}))
    stats = await asyncio.wait_for(daemon.run(handle_signals=False), 30)
    return source, sink, stats, events


async def test_every_segment_written_once_and_acked_after_the_write(tmp_path):
    source, sink, stats, events = await run_daemon([b"walk", b"run", b"jump"], tmp_path, workers=2)
    stored = rows(tmp_path / "d.db")
    assert {u: d.label for u, d in stored.items()} == {"mem://0": "walk", "mem://1": "run", "mem://2": "jump"}
    assert sorted(source.acked) == ["mem://0", "mem://1", "mem://2"]
    for uri in source.acked:
        assert events.index(("write", uri)) < events.index(("ack", uri))
    assert (stats.received, stats.classified, stats.acked, stats.released) == (3, 3, 3, 0)
    assert all(d.latency_ms is not None and d.latency_ms >= 0 for d in stored.values())


async def test_bad_segment_becomes_an_error_detection_and_is_acked(tmp_path):
    source, _, stats, _ = await run_daemon([b"walk", b"", b"run"], tmp_path)
    stored = rows(tmp_path / "d.db")
    assert stored["mem://1"].error == "segment is empty (0 bytes)"
    assert stored["mem://1"].label is None
    assert stored["mem://2"].label == "run"  # the daemon went on
    assert sorted(source.acked) == ["mem://0", "mem://1", "mem://2"]
    assert stats.failed == 1


async def test_transient_classifier_failure_releases_without_writing(tmp_path):
    source, _, stats, _ = await run_daemon([b"flaky", b"run"], tmp_path, classifier_retries=0)
    assert source.released == ["mem://0"]
    assert source.acked == ["mem://1"]
    assert "mem://0" not in rows(tmp_path / "d.db")


async def test_transient_classifier_failure_is_retried_in_place_then_written_once(tmp_path):
    source, _, stats, _ = await run_daemon([b"flaky", b"run"], tmp_path,
                                           classifier_retry_max_seconds=0.01)
    assert {u: d.label for u, d in rows(tmp_path / "d.db").items()} == {"mem://0": "flaky",
                                                                         "mem://1": "run"}
    assert source.released == [] and sorted(source.acked) == ["mem://0", "mem://1"]
    assert (stats.classified, stats.failed, stats.released) == (2, 0, 0)


@pytest.mark.parametrize("payload", [b"oom", b"crash"])
async def test_a_model_or_classifier_failure_is_transient_not_an_error_detection(tmp_path, payload):
    """Out of memory or a crashed backend on valid input: retried, then released; never an
    acknowledged error detection (which would eat a backlog during one bad spell)."""
    source, _, stats, _ = await run_daemon([payload, b"run"], tmp_path, classifier_retries=2,
                                           classifier_retry_max_seconds=0.01)
    assert source.released == ["mem://0"] and source.acked == ["mem://1"]
    assert list(rows(tmp_path / "d.db")) == ["mem://1"]
    assert (stats.classified, stats.failed, stats.released) == (1, 0, 1)


async def test_transient_sink_failure_is_retried_then_written_once(tmp_path):
    source, sink, _, _ = await run_daemon([b"walk"], tmp_path, failures=2)
    assert sink.attempts == 3
    assert list(rows(tmp_path / "d.db")) == ["mem://0"]
    assert source.acked == ["mem://0"] and source.released == []


async def test_sink_that_keeps_failing_means_no_ack(tmp_path):
    source, sink, stats, _ = await run_daemon([b"walk"], tmp_path, failures=99, sink_retries=2)
    assert sink.attempts == 3
    assert source.acked == [] and source.released == ["mem://0"]
    assert rows(tmp_path / "d.db") == {}


class DownSink(RecordingSink):
    """The real local store behind a switch: every write fails transiently until `up` is set."""

    def __init__(self, path, events):
        super().__init__(path, events)
        self.up = asyncio.Event()

    async def write(self, detection):
        self.attempts += 1
        if not self.up.is_set():
            raise TransientError("connection refused")
        await self.inner.write(detection)
        self.events.append(("write", detection.uri))


async def test_by_default_a_sink_that_is_down_holds_the_segment_and_stops_the_intake(tmp_path):
    """sink_retries unset: the write is retried until the sink is back; nothing is classified
    twice, nothing goes back to the source (no redelivery count towards a dead-letter queue), and
    a full queue stops the source meanwhile."""
    events = []
    source = ListSource([b"seg%d" % i for i in range(10)], events=events, hold_open=True)
    classifier = TextClassifier()
    sink = DownSink(tmp_path / "d.db", events)
    daemon = Daemon([source], classifier, [sink],
                    DaemonSettings(queue_size=2, workers=1, sink_retry_max_seconds=0.05,
                                   health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await until(lambda: sink.attempts >= 5, what="five write attempts on the down sink")
        # seg0 held by the worker, seg1 and seg2 queued, seg3 blocked in emit: nothing more,
        # however many attempts the sink takes meanwhile
        assert source.emitted == ["mem://0", "mem://1", "mem://2"]
        attempts = sink.attempts
        await until(lambda: sink.attempts >= attempts + 5, what="five more attempts")
        assert source.emitted == ["mem://0", "mem://1", "mem://2"]
        assert daemon.stats.received == 4 and daemon.stats.classified == 0
        assert source.acked == [] and source.released == []
        sink.up.set()
        await until(lambda: len(source.acked) == 10, what="all ten acknowledged")
    finally:
        daemon.stop()
        stats = await asyncio.wait_for(task, 10)
    assert sorted(source.acked) == sorted(f"mem://{i}" for i in range(10))
    assert source.released == []
    assert (stats.received, stats.classified, stats.released) == (10, 10, 0)  # each classified once
    assert {u: d.label for u, d in rows(tmp_path / "d.db").items()} == {
        f"mem://{i}": f"seg{i}" for i in range(10)}


async def test_stopping_while_the_model_fails_returns_the_segment_at_once(tmp_path):
    """A classifier retry sleeping its (long) backoff wakes at once on stop: no error detection,
    the segment released, well within the 60 s grace period."""
    events = []
    source = ListSource([b"oom"], events=events, hold_open=True)
    classifier = CountingClassifier()
    daemon = Daemon([source], classifier, [RecordingSink(tmp_path / "d.db", events)],
                    DaemonSettings(shutdown_timeout=60, classifier_retries=None,
                                   classifier_retry_max_seconds=60, health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    deadline = time.monotonic() + 10
    while classifier.calls < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert classifier.calls == 3 and daemon.status.unavailable and not daemon.status.ready
    started = time.monotonic()
    daemon.stop()  # the third wait (1-2 s) has just begun
    stats = await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 0.9  # cut short, not waited out
    assert classifier.calls == 3  # no attempt after the stop
    assert source.acked == [] and source.released == ["mem://0"] and stats.released == 1
    assert rows(tmp_path / "d.db") == {}


class CountingClassifier(TextClassifier):
    def __init__(self):
        super().__init__()
        self.calls = 0

    async def classify(self, segment):
        self.calls += 1
        return await super().classify(segment)


async def test_stopping_while_a_sink_is_down_returns_the_held_segment_at_once(tmp_path):
    events = []
    source = ListSource([b"walk"], events=events, hold_open=True)
    sink = DownSink(tmp_path / "d.db", events)
    daemon = Daemon([source], TextClassifier(), [sink],
                    DaemonSettings(shutdown_timeout=60, sink_retry_max_seconds=60, health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    await until(lambda: sink.attempts >= 3, what="three write attempts")
    daemon.stop()  # mid-wait between two attempts: the wait is cut short, not the 60 s grace period
    stats = await asyncio.wait_for(task, 5)
    assert source.acked == [] and source.released == ["mem://0"] and stats.released == 1
    assert rows(tmp_path / "d.db") == {}


async def test_a_sink_bug_is_not_retried_and_not_acked(tmp_path):
    source, sink, _, _ = await run_daemon([b"walk"], tmp_path, failures=1, transient=False)
    assert sink.attempts == 1
    assert source.acked == [] and source.released == ["mem://0"]


async def test_classification_timeout_is_an_error_detection(tmp_path):
    source, _, _, _ = await run_daemon([b"slow:1.0", b"run"], tmp_path, segment_timeout=0.2)
    stored = rows(tmp_path / "d.db")
    assert "segment_timeout=0.2s" in stored["mem://0"].error
    assert stored["mem://1"].label == "run"


async def test_stop_lets_in_flight_finish_and_returns_queued_segments(tmp_path):
    events = []
    source = ListSource([b"gate", b"a", b"b", b"c"], events=events, hold_open=True)
    classifier = TextClassifier()
    sink = RecordingSink(tmp_path / "d.db", events)
    daemon = Daemon([source], classifier, [sink],
                    DaemonSettings(queue_size=2, shutdown_timeout=30, health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await asyncio.wait_for(classifier.entered.wait(), 20)  # mem://0 is in classification
        await until(lambda: len(source.emitted) == 3, what="two segments queued behind it")
        events.append(("stop", None))
        daemon.stop()
        await until(lambda: source.released, what="the queued segments released")
    finally:
        classifier.gate.set()  # only now can the in-flight one finish: inside the grace period
    stats = await asyncio.wait_for(task, 20)
    assert source.acked == ["mem://0"]  # finished within the grace period, after the stop
    assert events.index(("stop", None)) < events.index(("write", "mem://0")) < events.index(
        ("ack", "mem://0"))
    assert sorted(source.released) == ["mem://1", "mem://2"]  # queued, never started: returned
    assert (stats.acked, stats.released) == (1, 2)
    assert list(rows(tmp_path / "d.db")) == ["mem://0"]


async def test_stop_past_the_grace_period_returns_the_in_flight_segment(tmp_path):
    events = []
    source = ListSource([b"gate"], events=events, hold_open=True)
    classifier = TextClassifier()
    daemon = Daemon([source], classifier, [RecordingSink(tmp_path / "d.db", events)],
                    DaemonSettings(shutdown_timeout=0.1, health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await asyncio.wait_for(classifier.entered.wait(), 20)  # in flight, and stays so
        daemon.stop()
        stats = await asyncio.wait_for(task, 10)
    finally:
        classifier.gate.set()
    assert source.acked == [] and source.released == ["mem://0"] and stats.released == 1
    assert rows(tmp_path / "d.db") == {}


async def test_full_queue_stops_the_source_pulling(tmp_path):
    events = []
    source = ListSource([b"gate"] * 10, events=events, hold_open=True)
    classifier = TextClassifier()
    daemon = Daemon([source], classifier, [RecordingSink(tmp_path / "d.db", events)],
                    DaemonSettings(queue_size=2, workers=1, shutdown_timeout=0, health_listen=""))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await asyncio.wait_for(classifier.entered.wait(), 20)
        await until(lambda: daemon.stats.received == 4, what="the source to reach the full queue")
        for _ in range(100):  # the loop runs on; the source, blocked in emit, reads no further
            await asyncio.sleep(0)
        # one in flight + two queued; the fourth is blocked in emit, not read ahead
        assert source.emitted == ["mem://0", "mem://1", "mem://2"]
        assert daemon.stats.received == 4
        daemon.stop()
        await asyncio.wait_for(task, 10)
    finally:
        classifier.gate.set()
    assert classifier.max_running == 1


async def test_a_crashing_source_stops_the_daemon_with_its_error(tmp_path):
    class Broken(Source):
        name = "broken"

        async def run(self, emit):
            raise OSError("watched folder vanished")

    events = []
    daemon = Daemon([Broken()], TextClassifier(), [RecordingSink(tmp_path / "d.db", events)])
    with pytest.raises(OSError, match="vanished"):
        await asyncio.wait_for(daemon.run(handle_signals=False), 10)


async def test_components_are_closed_even_when_a_start_fails(tmp_path):
    closed = []

    class FailingSink(Sink):
        name = "failing"

        async def start(self):
            raise RuntimeError("table livewatch does not exist")

        async def close(self):
            closed.append("failing")

    events = []
    good = RecordingSink(tmp_path / "d.db", events)
    daemon = Daemon([ListSource([b"a"], events=events)], TextClassifier(), [good, FailingSink()])
    with pytest.raises(RuntimeError, match="does not exist"):
        await daemon.run(handle_signals=False)
    assert closed == ["failing"]
