"""The local store's events table: kept current as detections land, in any order, and listed by
`livewatch events`."""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from livewatch.cli import cli
from livewatch.events import EventSettings, derive
from livewatch.sinks.local import LocalStore
from test_events import T0, all_windows, detection, scripted


def long_stream(rng: random.Random, segments: int = 40) -> list:
    """Segments of 4 s, 2 windows each, activities changing at random, some not confident."""
    out = []
    for seq in range(segments):
        labels = [(rng.choice(["walk", "run"]), rng.choice([0.9, 0.9, 0.7, 0.3])) for _ in range(2)]
        out.append(detection(seq, labels, pdt=seq % 7 != 6 or rng.random() < 0.5))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_events_table_equals_events_from_all_windows_whatever_the_order(tmp_path, seed):
    rng = random.Random(seed)
    ds = long_stream(rng)
    settings = EventSettings(max_gap=5.0, min_duration=2.0)
    store = LocalStore(tmp_path / "d.db", settings)
    order = ds + rng.sample(ds, k=6)  # and a few redeliveries
    rng.shuffle(order)
    for d in order:
        store.write(d)
    expected = [e.to_dict() for e in derive(all_windows(ds), settings)]
    assert expected  # the random stream has events at all
    assert store.events() == expected


def test_the_events_of_one_order_equal_those_of_another(tmp_path):
    ds = scripted()
    a, b = LocalStore(tmp_path / "a.db"), LocalStore(tmp_path / "b.db")
    for d in ds:
        a.write(d)
    for d in reversed(ds):
        b.write(d)
    assert [(e["label"], e["state"]) for e in a.events()] == [
        ("walk", "closed"), ("run", "closed"), ("walk", "open")]
    assert a.events() == b.events()


def test_write_returns_what_changed_around_the_detection(tmp_path):
    store = LocalStore(tmp_path / "d.db")
    ds = scripted()
    old, now = store.write(ds[0])
    assert old == [] and [(e.label, e.state, e.windows) for e in now] == [("walk", "open", 2)]
    old, now = store.write(ds[1])
    assert [o["revision"] for o in old] == [4] and now[0].revision == 8
    assert store.write(ds[1])[1] == now  # a redelivery changes nothing


def test_cli_lists_events_by_stream_label_and_time(tmp_path):
    db = tmp_path / "d.db"
    store = LocalStore(db)
    for d in scripted() + [detection(0, [("walk", 0.9)] * 2, stream="cam2")]:
        store.write(d)
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["events", "--db", str(db), "--stream", "cam1", "--format", "json",
                                 "--since", "2026-11-28T12:00:20Z"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["label"], r["start"], r["end"]) for r in rows] == [
        ("run", "2026-11-28T12:00:24.000Z", "2026-11-28T12:00:40.000Z"),
        ("walk", "2026-11-28T12:00:40.000Z", "2026-11-28T12:00:48.000Z")]
    result = runner.invoke(cli, ["events", "--db", str(db), "--label", "run", "--format", "text"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1 and "cam1  run  closed  16.0 s" in result.output
    assert f"{T0.isoformat()}"[:10] in result.output


@pytest.mark.parametrize("seed", range(6))
def test_after_every_write_the_table_equals_events_from_the_windows_so_far(tmp_path, seed):
    """Gaps (segments that never come) and any order: states and spans are never stale."""
    rng = random.Random(100 + seed)
    ds = [d for d in long_stream(rng, 30) if rng.random() > 0.3]
    rng.shuffle(ds)
    settings = EventSettings(max_gap=3.0, min_duration=2.0)
    store = LocalStore(tmp_path / "d.db", settings)
    for i, d in enumerate(ds):
        store.write(d)
        assert store.events() == [e.to_dict() for e in derive(all_windows(ds[:i + 1]), settings)], i


def ended_stream(rng: random.Random, segments: int = 30) -> list:
    """`long_stream` whose last segment is marked as the stream's last (EXT-X-ENDLIST)."""
    ds = long_stream(rng, segments)
    ds[-1] = ds[-1].model_copy(update={"last": True})
    return ds


def test_the_last_segment_closes_the_stored_event_it_ends(tmp_path):
    store = LocalStore(tmp_path / "d.db")
    ds = scripted(ended=True)
    for d in ds[:-1]:
        store.write(d)
    assert [(e["label"], e["state"]) for e in store.events()][-1] == ("walk", "open")
    old, now = store.write(ds[-1])
    assert [(o["state"], o["revision"]) for o in old][-1] == ("open", 4)
    assert [(e.label, e.state, e.revision) for e in now][-1] == ("walk", "closed", 9)
    assert [e["state"] for e in store.events()] == ["closed"] * 3
    assert store.query()[-1].last is True  # kept with the detection
    store.close()
    assert [e["state"] for e in LocalStore(tmp_path / "d.db").events()] == ["closed"] * 3


@pytest.mark.parametrize("seed", range(6))
def test_an_ended_stream_closes_its_events_whatever_the_order(tmp_path, seed):
    """Shuffled arrival with redeliveries; every other seed, the last segment arrives first; from
    seed 3, the stream also ended once in the middle (and started again under its name)."""
    rng = random.Random(200 + seed)
    ds = ended_stream(rng)
    if seed >= 3:  # one run across the first end, which cuts it there
        ds[14:17] = [detection(n, [("run", 0.9)] * 2, last=n == 15) for n in (14, 15, 16)]
    settings = EventSettings(max_gap=3.0, min_duration=2.0)
    store = LocalStore(tmp_path / "d.db", settings)
    order = ds[:-1] + rng.sample(ds, k=4)
    rng.shuffle(order)
    order = [ds[-1]] + order if seed % 2 else order + [ds[-1]]
    for i, d in enumerate(order):
        store.write(d)
        assert store.events() == [e.to_dict() for e in derive(all_windows(order[:i + 1]), settings)], i
    events = store.events()
    assert events and {e["state"] for e in events} == {"closed"}
