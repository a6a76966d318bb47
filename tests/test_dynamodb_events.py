"""Events in the `dynamodb` sink's table (`livewatch.sinks.dynamodb_events`), over real HTTP
against moto and dynalite: the event items equal `events.derive` over every window stored, in
whatever order (and how often) the detections came; a late segment retires what it merged; a
computation that knew less never overwrites one that knew more; they are listed by
``livewatch events --dynamodb`` and are the outbox a `Notifier` delivers from."""
from __future__ import annotations

import asyncio
import json
import random

import boto3
import pytest
from click.testing import CliRunner

from livewatch.cli import cli
from livewatch.events import EventSettings, derive
from livewatch.notify import Notifier
from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
from test_dynamodb_sink import backend, make_table  # noqa: F401 (a fixture)
from test_events import T0, all_windows, detection, scripted
from test_local_events import long_stream
from test_notify import Consumer


def event_items(client, table: str) -> tuple[list[dict], list[dict]]:
    """(the events not retired, oldest first; the retired ones), as their JSON."""
    items = client.scan(TableName=table, ConsistentRead=True)["Items"]
    events = [i for i in items if i.get("Kind", {}).get("S") == "event"]
    current = sorted((json.loads(i["Event"]["S"]) for i in events if "Retired" not in i),
                     key=lambda e: (e["stream"], e["start"] if isinstance(e["start"], float)
                                    else e["start"], e["label"]))
    return current, [json.loads(i["Event"]["S"]) for i in events if "Retired" in i]


def expected(detections, settings) -> list[dict]:
    return [e.to_dict() for e in derive(all_windows(detections), settings)]


def sink_for(endpoint: str, table: str, settings: EventSettings) -> DynamoDBSink:
    sink = DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=endpoint, batch_wait_ms=0))
    sink.event_settings = settings
    return sink


async def write_all(sink: DynamoDBSink, detections) -> None:
    """Start `sink`, write `detections` in order, close it."""
    await sink.start()
    try:
        for d in detections:
            await sink.write(d)
    finally:
        await sink.close()


@pytest.mark.parametrize("seed", range(2))
async def test_event_items_equal_the_events_of_all_windows_whatever_the_order(backend, seed):
    endpoint, client, _ = backend
    table = make_table(client)
    rng = random.Random(seed)
    timed = scripted()  # program date-time throughout
    mixed = [d.model_copy(update={"stream": "cam2", "uri": "cam2/" + d.uri}) for d in long_stream(rng, 24)]
    settings = EventSettings(max_gap=5.0, min_duration=2.0)
    order = timed + mixed + rng.sample(timed + mixed, k=6)  # and a few redeliveries
    rng.shuffle(order)
    await write_all(sink_for(endpoint, table, settings), order)
    want = expected(timed + mixed, settings)
    assert {e["clock"] for e in want} == {"program-date-time", "sequence"}
    current, _ = event_items(client, table)
    assert sorted(current, key=json.dumps) == sorted(want, key=json.dumps)
    # the detections read back are still the detections only
    reader = DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=endpoint))
    try:
        from livewatch.components import DetectionQuery
        assert len(await reader.query(DetectionQuery())) == len(timed + mixed)
    finally:
        await reader.close()


async def test_a_late_middle_segment_merges_two_events_and_retires_one(backend):
    endpoint, client, _ = backend
    table = make_table(client)
    settings = EventSettings(max_gap=1.0)
    ds = [detection(seq, [("walk", 0.9)] * 2) for seq in range(3)]
    sink = sink_for(endpoint, table, settings)
    await sink.start()
    try:
        await sink.write(ds[0])
        await sink.write(ds[2])  # a gap at segment 1: two walk events
        before, _ = event_items(client, table)
        assert [(e["state"], e["revision"]) for e in before] == [("closed", 5), ("open", 4)]
        await sink.write(ds[1])  # late: one event from 0 s
        await sink.write(ds[1])  # redelivered: nothing changes
    finally:
        await sink.close()
    current, retired = event_items(client, table)
    assert current == expected(ds, settings) and len(current) == 1
    assert [(r["id"], r["state"], r["revision"], r["merged_into"]) for r in retired] == [
        (before[1]["id"], "closed", 5, current[0]["id"])]


async def test_a_computation_that_knew_less_never_overwrites_one_that_knew_more(aws_env, moto_server):
    """Run the writes of stale computations after the full one: the items keep the full one's.
    The split case is why not on the revision alone: without the run segment, walk 0-16 s is one
    event of 8 windows (revision 8); with it, walk 0-4 s closes at revision 5."""
    client = boto3.client("dynamodb")
    table = make_table(client)
    settings = EventSettings(max_gap=5.0, min_duration=2.0)
    w, r = ("walk", 0.9), ("run", 0.9)
    ds = [detection(0, [w, w]), detection(1, [r, r]), detection(2, [w, w]), detection(3, [w, w])]
    sink = sink_for(moto_server.endpoint_url, table, settings)
    await sink.start()
    try:
        for d in ds:
            await sink.write(d)
        full, _ = event_items(client, table)
        assert full == expected(ds, settings)
        assert [(e["label"], e["revision"]) for e in full] == [("walk", 5), ("run", 5), ("walk", 8)]
        for stale in ([ds[0], ds[2], ds[3]], ds[:1], ds[:3]):  # each an older read of the stream
            windows = all_windows(stale)
            await sink._events._write("cam1", derive(windows, settings), windows, "program-date-time",
                                      float("-inf"), active=[])
        assert [e.revision for e in derive(all_windows([ds[0], ds[2], ds[3]]), settings)] == [12]
        assert event_items(client, table) == (full, [])
    finally:
        await sink.close()


def test_livewatch_events_lists_the_tables_events(aws_env, moto_server, tmp_path, monkeypatch):
    client = boto3.client("dynamodb")
    table = make_table(client)

    asyncio.run(write_all(sink_for(moto_server.endpoint_url, table, EventSettings()),
                          scripted() + [detection(0, [("walk", 0.9)] * 2, stream="cam2")]))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["events", "--dynamodb", table, "--stream", "cam1", "--format", "json",
                                 "--since", "2026-11-28T12:00:20Z"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["label"], r["start"], r["end"], r["state"]) for r in rows] == [
        ("run", "2026-11-28T12:00:24.000Z", "2026-11-28T12:00:40.000Z", "closed"),
        ("walk", "2026-11-28T12:00:40.000Z", "2026-11-28T12:00:48.000Z", "open")]
    result = runner.invoke(cli, ["events", "--dynamodb", table, "--label", "walk", "--format", "text"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 3 and "cam2  walk  open" in result.output
    # a configured dynamodb sink is the store `livewatch events` reads by default
    (tmp_path / "livewatch.toml").write_text(f'[[sinks]]\ntype = "dynamodb"\ntable = "{table}"\n')
    result = runner.invoke(cli, ["events", "--format", "json", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["label"] for line in result.output.splitlines()] == ["run", "walk"]


async def test_the_table_is_the_outbox_of_a_notifier(aws_env, moto_server):
    client = boto3.client("dynamodb")
    table = make_table(client)
    store = sink_for(moto_server.endpoint_url, table, EventSettings(max_gap=1.0))
    await store.start()
    consumer = Consumer()
    notifier = Notifier.for_sinks([store, consumer])
    try:
        assert notifier.store is store
        for seq in (0, 2):  # a gap at segment 1: two walk events
            await store.write(detection(seq, [("walk", 0.9)] * 2))
        pending = await store.pending_events("consumer")
        assert [(e["state"], e["revision"], delivered) for e, delivered in pending] == [
            ("closed", 5, None), ("open", 4, None)]
        await notifier.deliver(consumer)
        assert [c[:3] for c in consumer.changes] == [("closed", "walk", 5), ("opened", "walk", 4)]
        assert await store.pending_events("consumer") == []
        await store.mark_notified("consumer", pending[0][0]["id"], 1)  # never lowered
        assert await store.pending_events("consumer") == []
        await store.write(detection(1, [("walk", 0.9)] * 2))  # late: one event from 0 s
        await store.write(detection(3, [("run", 0.9)] * 2))
        await notifier.deliver(consumer, flush=True)
        assert [c[:3] for c in consumer.changes[2:]] == [("closed", "walk", 13), ("opened", "run", 4),
                                                         ("closed", "walk", 5)]
        assert await store.pending_events("consumer") == []
        # another daemon's sink on the same table: what this consumer had is shared
        other = sink_for(moto_server.endpoint_url, table, EventSettings(max_gap=1.0))
        await other.start()
        try:
            assert await other.pending_events("consumer") == []
            assert len(await other.pending_events("someone-else")) == 2  # per consumer, not retired
        finally:
            await other.close()
    finally:
        await store.close()


async def test_an_ended_stream_closes_its_event_items_and_the_notifier_sends_closed(aws_env, moto_server):
    """The last segment (its source saw EXT-X-ENDLIST) arrives first, the rest shuffled: every
    event item ends closed, and a consumer is told `closed` for the last event."""
    client = boto3.client("dynamodb")
    table = make_table(client)
    ds = scripted(ended=True)
    rest = ds[:-1]
    random.Random(7).shuffle(rest)
    store = sink_for(moto_server.endpoint_url, table, EventSettings())
    await store.start()
    consumer = Consumer()
    notifier = Notifier.for_sinks([store, consumer])
    try:
        await store.write(ds[-1])
        for d in rest[:-1]:
            await store.write(d)
        await notifier.deliver(consumer, flush=True)
        await store.write(rest[-1])
        await notifier.deliver(consumer, flush=True)
        from livewatch.components import DetectionQuery
        read = await store.query(DetectionQuery(stream="cam1"))
        assert await store.pending_events("consumer") == []
    finally:
        await store.close()
    current, _ = event_items(client, table)
    assert current == expected(ds, EventSettings())
    assert [(e["label"], e["state"], e["revision"]) for e in current] == [
        ("walk", "closed", 15), ("run", "closed", 17), ("walk", "closed", 9)]
    assert [d.last for d in read] == [False] * 11 + [True]  # the item keeps it (`Last`)
    closed = {c[:3] for c in consumer.changes if c[0] == "closed"}
    assert {("closed", "walk", 15), ("closed", "run", 17), ("closed", "walk", 9)} <= closed


async def test_with_events_off_the_sink_writes_detections_only(backend):
    """`events = false`: one batched write per detection and nothing else, no event items; the
    table is then no outbox, and `livewatch events` says so instead of listing nothing."""
    from livewatch.components import DetectionQuery
    from livewatch.errors import ConfigError
    from livewatch.testing.front import AwsFront

    endpoint, client, _ = backend
    table = make_table(client)
    ds = [detection(seq, [("walk", 0.9)] * 2) for seq in range(4)]
    with AwsFront(endpoint) as front:
        await write_all(DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=front.endpoint_url,
                                                     batch_wait_ms=0, events=False)), ds)
    calls = [target.rpartition(".")[2] for target in front.targets]
    assert calls == ["DescribeTable"] + ["BatchWriteItem"] * len(ds), calls
    assert event_items(client, table) == ([], [])
    reader = DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=endpoint, events=False))
    try:
        assert [d.sequence for d in await reader.query(DetectionQuery())] == [0, 1, 2, 3]
        with pytest.raises(ConfigError, match="keeps no events"):
            await reader.query_events(DetectionQuery())
    finally:
        await reader.close()
    with pytest.raises(ConfigError, match="its events are turned off"):
        Notifier.for_sinks([reader, Consumer()])
