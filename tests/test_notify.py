"""livewatch.notify: which change a sink gets when, from the event store as outbox."""
from __future__ import annotations

import asyncio
import time

import pytest

from livewatch.components import Sink
from livewatch.errors import ConfigError
from livewatch.events import EventSettings
from livewatch.notify import Notifier
from livewatch.sinks.local import LocalOptions, LocalSink
from livewatch.testing import RecordingSink
from test_events import detection


class Consumer(Sink):
    name = "consumer"

    def __init__(self):
        super().__init__(instance="consumer")
        self.changes = []

    async def notify(self, change) -> None:
        self.changes.append((change.type, change.event["label"], change.revision, time.monotonic()))


async def test_opened_and_closed_go_at_once_and_updates_at_most_every_update_seconds(tmp_path):
    store = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    store.event_settings = EventSettings(update_seconds=0.5)
    await store.start()
    consumer = Consumer()
    notifier = Notifier.for_sinks([store, consumer])
    sent: dict[str, float] = {}
    try:
        await store.write(detection(0, [("walk", 0.9)] * 2))
        assert await notifier.deliver(consumer, sent) is None
        await store.write(detection(1, [("walk", 0.9)] * 2))
        due = await notifier.deliver(consumer, sent)
        assert 0 < due <= 0.5 and [c[:3] for c in consumer.changes] == [("opened", "walk", 4)]
        deadline = time.monotonic() + 5
        while len(consumer.changes) < 2:  # held back until update_seconds after the last one
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
            await notifier.deliver(consumer, sent)
        assert consumer.changes[1][:3] == ("updated", "walk", 8)
        assert consumer.changes[1][3] - consumer.changes[0][3] >= 0.5
        await store.write(detection(2, [("run", 0.9)] * 2))
        await notifier.deliver(consumer, sent)  # closed at once, though an update was just sent
        assert [c[:3] for c in consumer.changes[2:]] == [("closed", "walk", 9), ("opened", "run", 4)]
        assert await store.pending_events("consumer") == []
        assert len(await store.pending_events("someone-else")) == 2  # per consumer
    finally:
        await store.close()


def test_a_sink_taking_changes_needs_a_sink_keeping_events():
    assert Notifier.for_sinks([RecordingSink()]) is None
    with pytest.raises(ConfigError, match="need a sink that keeps events"):
        Notifier.for_sinks([RecordingSink(), Consumer()])


async def test_an_event_a_late_segment_merges_into_an_earlier_one_is_closed(tmp_path):
    store = LocalSink(LocalOptions(path=tmp_path / "d.db"))
    store.event_settings = EventSettings(max_gap=1.0)
    await store.start()
    consumer = Consumer()
    notifier = Notifier.for_sinks([store, consumer])
    try:
        for seq in (0, 2):  # a gap at segment 1: two walk events
            await store.write(detection(seq, [("walk", 0.9)] * 2))
        await notifier.deliver(consumer)
        assert [c[:3] for c in consumer.changes] == [("closed", "walk", 5), ("opened", "walk", 4)]
        await store.write(detection(1, [("walk", 0.9)] * 2))  # late: one event from 0 s
        pending = await store.pending_events("consumer")
        await notifier.deliver(consumer)
        assert [c[:3] for c in consumer.changes[2:]] == [("updated", "walk", 12), ("closed", "walk", 5)]
        merged = [e for e, _ in pending if e.get("merged_into")]
        assert len(merged) == 1 and merged[0]["merged_into"] == pending[0][0]["id"]
        assert await store.pending_events("consumer") == []
    finally:
        await store.close()
