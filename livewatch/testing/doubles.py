"""Light test doubles for plugin authors: a source that emits a list, a sink that records, a segment
made from bytes. No server, no model, no network: they drive a `Daemon` (or your own component)
in-process.

    from livewatch.daemon import Daemon
    from livewatch.settings import DaemonSettings
    from livewatch.testing import ListSource, RecordingSink, fake_segment

    async def test_my_classifier_labels_every_segment():
        source, sink = ListSource([b"walk", b"run"]), RecordingSink()
        await Daemon([source], MyClassifier(), [sink], DaemonSettings(health_listen="")).run(
            handle_signals=False)
        assert [d.uri for d in sink.detections] == source.acked   # written, then acknowledged

    async def test_my_sink_writes_a_detection(tmp_path):
        segment = fake_segment(b"...", uri="s3://b/cam1/0001.ts")
        await MySink(...).write(Detection.for_segment(segment, label="walk", probability=0.9))

Fixtures (from the ``livewatch`` pytest plugin, loaded wherever livewatch is installed):
``list_source`` and ``recording_sink`` build the doubles; ``fake_segment`` is the function.
"""
from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Iterable
from pathlib import Path

import pytest

from ..components import Emit, Sink, Source
from ..contract import Detection, Segment

_unnamed = itertools.count()


def fake_segment(data: bytes | Path = b"", *, uri: str | None = None, stream: str = "test",
                 sequence: int | None = None, **fields) -> Segment:
    """A `Segment` whose bytes are `data` (bytes, or a file whose bytes are read on open)."""
    if isinstance(data, Path):
        path = data

        def opener():
            return open(path, "rb")
        uri = uri or str(path)
        size = path.stat().st_size
    else:
        def opener(payload=bytes(data)):
            return io.BytesIO(payload)
        uri = uri or f"mem://{stream}/{sequence if sequence is not None else next(_unnamed)}"
        size = len(data)
    return Segment(uri=uri, stream=stream, sequence=sequence, open=opener, size=size, **fields)


class ListSource(Source):
    """Emits `items` (bytes, paths or ready `Segment`s) in order, then returns, or, with
    ``hold_open=True``, waits like a live source until the daemon stops it. Records what the
    daemon did with each segment: ``emitted``, ``acked`` and ``released`` (lists of URIs), and
    ``events`` (``("ack" | "release", uri)`` in order, shared with a `RecordingSink` if given)."""

    name = "list"

    def __init__(self, items: Iterable[bytes | Path | Segment] = (), *, stream: str = "test",
                 hold_open: bool = False, events: list | None = None, instance: str | None = None):
        super().__init__(instance=instance)
        self.segments = [item if isinstance(item, Segment) else
                         fake_segment(item, stream=stream, sequence=i,
                                      uri=None if isinstance(item, Path) else f"mem://{i}")
                         for i, item in enumerate(items)]
        self.hold_open = hold_open
        self.events = events if events is not None else []
        self.emitted: list[str] = []
        self.acked: list[str] = []
        self.released: list[str] = []
        #: set once every segment has been handed to the daemon
        self.exhausted = asyncio.Event()

    async def run(self, emit: Emit) -> None:
        for segment in self.segments:
            await emit(segment)
            self.emitted.append(segment.uri)
        self.exhausted.set()
        if self.hold_open:
            await asyncio.Event().wait()

    async def ack(self, segment: Segment) -> None:
        self.acked.append(segment.uri)
        self.events.append(("ack", segment.uri))

    async def release(self, segment: Segment) -> None:
        self.released.append(segment.uri)
        self.events.append(("release", segment.uri))


class RecordingSink(Sink):
    """Keeps every detection written to it, in order (``detections``), and appends
    ``("write", uri)`` to ``events``. ``fail(n, exc)`` makes the next `n` writes raise `exc`."""

    name = "recording"

    def __init__(self, *, events: list | None = None, instance: str | None = None):
        super().__init__(instance=instance)
        self.detections: list[Detection] = []
        self.events = events if events is not None else []
        self.attempts = 0
        self.started = self.closed = False
        self._failures: list[BaseException] = []

    def fail(self, count: int, exc: BaseException) -> None:
        self._failures = [exc] * count

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def write(self, detection: Detection) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        self.detections.append(detection)
        self.events.append(("write", detection.uri))

    def by_uri(self) -> dict[str, Detection]:
        """The last detection written for each URI."""
        return {d.uri: d for d in self.detections}


@pytest.fixture
def list_source():
    """``list_source(items, **options)``: a `ListSource`."""
    return ListSource


@pytest.fixture
def recording_sink() -> RecordingSink:
    """A fresh `RecordingSink`."""
    return RecordingSink()
