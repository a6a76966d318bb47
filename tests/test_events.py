"""Windows -> events (livewatch.events): the rules, and the same events whatever the order."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from livewatch.contract import Detection, WindowResult
from livewatch.events import PDT, SEQUENCE, EventSettings, derive, windows_of

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def detection(seq: int, labels: list[tuple[str, float]], *, pdt: bool = True, stream: str = "cam1",
              seconds: float = 4.0, last: bool = False) -> Detection:
    """A segment `seq` of `seconds`, cut into len(labels) back-to-back windows; `last`: the
    stream's last segment (its source saw EXT-X-ENDLIST after it)."""
    step = seconds / len(labels)
    return Detection(
        uri=f"{stream}/seg{seq:05d}.ts", stream=stream, sequence=seq, duration=seconds, last=last,
        start=T0 + timedelta(seconds=seq * seconds) if pdt else None,
        windows=[WindowResult(start=i * step, end=(i + 1) * step, frames=[0, 1], label=label,
                              probability=p) for i, (label, p) in enumerate(labels)])


def scripted(pdt: bool = True, ended: bool = False) -> list[Detection]:
    """12 segments of 4 s, 2 windows each: walk 0-14 s, idle (low) 14-24 s, run 24-40 s,
    walk 40-48 s (the stream stops there; `ended`: its last segment says so)."""
    w, r, low = ("walk", 0.9), ("run", 0.8), ("walk", 0.2)
    plan = [[w, w], [w, w], [w, w], [w, low], [low, low], [low, low],
            [r, r], [r, r], [r, r], [r, r], [w, w], [w, w]]
    return [detection(seq, labels, pdt=pdt, last=ended and seq == len(plan) - 1)
            for seq, labels in enumerate(plan)]


def all_windows(detections):
    return [w for d in detections for w in windows_of(d)]


def test_scripted_stream_gives_the_activities_with_their_times_and_states():
    events = derive(all_windows(scripted()))
    got = [(e.label, e.start - T0.timestamp(), e.end - T0.timestamp(), e.state) for e in events]
    assert got == [("walk", 0.0, 14.0, "closed"), ("run", 24.0, 40.0, "closed"),
                   ("walk", 40.0, 48.0, "open")]
    walk = events[0]
    assert walk.segments == [f"cam1/seg{i:05d}.ts" for i in range(4)]
    assert walk.peak_probability == 0.9 and walk.mean_probability == pytest.approx(0.9)
    assert walk.revision == 2 * 7 + 1  # 7 windows, closed
    assert walk.to_dict()["start"] == "2026-11-28T12:00:00.000Z"
    assert derive(all_windows(scripted()), ended=True)[-1].state == "closed"


@pytest.mark.parametrize("seed", range(20))
def test_the_same_windows_in_any_order_give_the_same_events(seed):
    rng = random.Random(seed)
    windows = all_windows(scripted())
    expected = derive(windows)
    shuffled = windows + rng.sample(windows, k=5)  # redelivered windows count once
    rng.shuffle(shuffled)
    assert derive(shuffled) == expected
    assert len({e.id for e in expected}) == len(expected)


def states(events) -> list[tuple[str, float, float, str, int]]:
    """(label, start, end, state, revision), times in seconds from T0 (or sequence 0)."""
    base = T0.timestamp() if events and events[0].clock == PDT else 0.0
    return [(e.label, e.start - base, e.end - base, e.state, e.revision) for e in events]


@pytest.mark.parametrize("pdt", [True, False])
def test_a_stream_that_ended_closes_its_last_event(pdt):
    still_open = states(derive(all_windows(scripted(pdt=pdt))))
    assert still_open[-1] == ("walk", 40.0, 48.0, "open", 8)
    ended = states(derive(all_windows(scripted(pdt=pdt, ended=True))))
    assert ended == still_open[:-1] + [("walk", 40.0, 48.0, "closed", 9)]  # revision + 1, as any close


@pytest.mark.parametrize("seed", range(10))
def test_the_end_closes_events_whatever_the_order(seed):
    rng = random.Random(seed)
    windows = all_windows(scripted(ended=True))
    expected = derive(windows)
    assert [e.state for e in expected] == ["closed"] * 3
    shuffled = windows + rng.sample(windows, k=4)
    rng.shuffle(shuffled)
    assert derive(shuffled) == expected
    # the last segment alone (it arrived first): its event is closed at once
    assert [e.state for e in derive(all_windows(scripted(ended=True)[-2:]))] == ["closed"]


def test_the_end_closes_an_event_before_it_even_when_the_last_segment_is_not_confident():
    ds = [detection(n, [("run", 0.9)] * 2) for n in range(3)]
    ds.append(detection(3, [("run", 0.1)] * 2, last=True))  # nothing confident at the very end
    assert states(derive(all_windows(ds), EventSettings(max_gap=6.0))) == [
        ("run", 0.0, 12.0, "closed", 13)]


def test_no_event_reaches_past_the_end_of_a_stream():
    """Segments after a segment marked last (the stream started again under its name) begin new
    events; the one that ended with it stays closed."""
    ds = [detection(n, [("run", 0.9)] * 2, last=n == 1) for n in range(4)]
    assert states(derive(all_windows(ds))) == [
        ("run", 0.0, 8.0, "closed", 9), ("run", 8.0, 16.0, "open", 8)]
    ds.append(detection(4, [("run", 0.9)] * 2, last=True))
    assert [e.state for e in derive(all_windows(ds))] == ["closed", "closed"]


def test_ids_are_stable_and_change_with_stream_label_or_start():
    a = derive(all_windows(scripted()))
    b = derive(all_windows(scripted()))
    assert [e.id for e in a] == [e.id for e in b]
    other = derive(all_windows([detection(0, [("walk", 0.9)] * 2, stream="cam2"),
                                detection(1, [("walk", 0.9)] * 2, stream="cam2")]))
    assert other[0].id != a[0].id


def test_a_gap_longer_than_max_gap_splits_an_event_and_short_runs_are_dropped():
    ds = [detection(0, [("walk", 0.9)] * 2), detection(1, [("walk", 0.9)] * 2),
          detection(4, [("walk", 0.9)] * 2), detection(5, [("walk", 0.9)] * 2),
          detection(9, [("walk", 0.2), ("walk", 0.9)])]  # 2 s at the end: min_duration
    tight = derive(all_windows(ds), EventSettings(max_gap=4.0, min_duration=2.5))
    assert [(e.start - T0.timestamp(), e.end - T0.timestamp()) for e in tight] == [(0, 8), (16, 24)]
    loose = derive(all_windows(ds), EventSettings(max_gap=15.0, min_duration=2.0))
    assert [(e.start - T0.timestamp(), e.end - T0.timestamp()) for e in loose] == [(0, 40)]
    assert loose[0].state == "open"  # the stream has not moved on past it


def test_without_program_date_time_segments_are_ordered_by_sequence_and_duration():
    events = derive(all_windows(scripted(pdt=False)))
    assert {e.clock for e in events} == {SEQUENCE}
    assert [(e.label, e.start, e.end) for e in events] == [
        ("walk", 0.0, 14.0), ("run", 24.0, 40.0), ("walk", 40.0, 48.0)]
    assert events[0].to_dict()["start"] == 0.0  # seconds, not a made-up wall-clock time
    assert derive(all_windows(scripted()))[0].clock == PDT


def test_the_events_table_of_the_config_reaches_the_built_sinks(tmp_path, monkeypatch):
    from livewatch.errors import ConfigError
    from livewatch.settings import load_settings
    from livewatch.wiring import build

    config = tmp_path / "lw.toml"
    config.write_text('[events]\nmax_gap = 3.5\n\n[[sources]]\ntype = "folder"\npath = "live"\n\n'
                      '[[sinks]]\ntype = "local"\npath = "d.db"\n')
    monkeypatch.setenv("LIVEWATCH_EVENTS__MIN_PROBABILITY", "0.7")
    settings = load_settings(config)
    assert (settings.events.max_gap, settings.events.min_probability) == (3.5, 0.7)
    assert build(settings).sinks[0].event_settings.max_gap == 3.5
    config.write_text("[events]\nmax_gap = -1\n")
    with pytest.raises(ConfigError, match="events.max_gap"):
        load_settings(config)
