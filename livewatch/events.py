"""Windows -> events: pure and deterministic (DESIGN.md, "Event").

An event is a maximal run of one stream's windows, in stream time, whose top label is the same
`label` with probability >= `min_probability`, where the gap between two windows of the run is at
most `max_gap` seconds and a confident window of another label ends it; runs shorter than
`min_duration` are not events. A stream ends at a segment its source marked `last` (an HLS
playlist's EXT-X-ENDLIST): a run never reaches past that segment, and every event up to it is
closed. The same windows give the same events whatever order they arrived
in: they are sorted by stream time (ties broken by segment and place) before anything else.

Stream time is the segment's program date-time plus the window's offset where every window of the
stream has one (`clock = "program-date-time"`); otherwise segments are placed at media sequence x
duration (`clock = "sequence"`: seconds from sequence 0, assuming segments of equal length).

`revision` is derived too (2 x windows, +1 once closed), so it grows with every window an event
gains and when it closes, and every daemon computing it from the same windows gets the same number.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .contract import Detection, iso_utc

PDT, SEQUENCE = "program-date-time", "sequence"


class EventSettings(BaseModel):
    """The `[events]` table: how windows become events."""

    model_config = ConfigDict(extra="forbid")

    min_probability: float = Field(
        0.5, ge=0, le=1, description="a window counts towards an event of its top label at or "
        "above this probability (0.5: the label is likelier than all the others together)"
    )
    max_gap: float = Field(
        6.0, ge=0, description="seconds between two windows of one event at most; a longer gap "
        "ends it (6: one lost or unclassified segment of a usual 2-6 s HLS stream does not split "
        "an event)"
    )
    min_duration: float = Field(
        2.0, ge=0, description="seconds an event lasts at least; shorter runs are not events (2: "
        "one flickering window of a 32-frame model, about 1.3 s, is not an activity)"
    )
    update_seconds: float = Field(
        10.0, gt=0, description="at most one `updated` change per event this often to sinks "
        "that take event changes (opened and closed always go at once)"
    )


@dataclass(frozen=True)
class TimedWindow:
    """One stored window with what ordering it needs."""

    stream: str
    uri: str
    n: int  # its place in its segment
    label: str
    probability: float
    offset_start: float
    offset_end: float
    sequence: int | None = None
    segment_start: datetime | None = None  # the segment's program date-time
    duration: float | None = None  # the segment's
    last: bool = False  # its segment is its stream's last (Detection.last)

    def times(self, clock: str) -> tuple[float, float] | None:
        """(start, end) in seconds on `clock`; None when this window cannot be placed on it."""
        if clock == PDT:
            if self.segment_start is None:
                return None
            base = _aware(self.segment_start).timestamp()
        elif self.sequence is not None and self.duration:
            base = self.sequence * self.duration
        else:
            return None
        return base + self.offset_start, base + self.offset_end


@dataclass
class Event:
    id: str
    stream: str
    label: str
    start: float  # seconds on `clock` (epoch seconds for program-date-time)
    end: float
    peak_probability: float
    mean_probability: float
    windows: int
    segments: list[str]
    state: Literal["open", "closed"]
    revision: int
    clock: str = PDT
    probabilities: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready: times as UTC ISO-8601 on the program date-time clock, seconds otherwise."""
        out = asdict(self)
        out.pop("probabilities")
        if self.clock == PDT:
            out["start"], out["end"] = _iso(self.start), _iso(self.end)
        out["duration"] = round(self.end - self.start, 3)
        return out


def windows_of(detection: Detection) -> list[TimedWindow]:
    return [TimedWindow(stream=detection.stream, uri=detection.uri, n=n, label=w.label,
                        probability=w.probability, offset_start=w.start, offset_end=w.end,
                        sequence=detection.sequence, segment_start=detection.start,
                        duration=detection.duration, last=detection.last)
            for n, w in enumerate(detection.windows)]


def clock_of(windows: Iterable[TimedWindow]) -> str:
    """program-date-time if every window has one, else sequence."""
    return PDT if all(w.segment_start is not None for w in windows) else SEQUENCE


def event_id(stream: str, label: str, start: float) -> str:
    key = f"{stream}\x00{label}\x00{start:.3f}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def derive(windows: Iterable[TimedWindow], settings: EventSettings | None = None, *,
           ended: bool = False, clock: str | None = None) -> list[Event]:
    """The events of `windows` (any streams, any order, duplicates allowed), ordered by stream,
    start and label. An event is `closed` once the stream's latest window ends more than
    `max_gap` after it, a confident window of another label follows it, a segment marked `last`
    lies at or after its start (the stream ended there; a run never reaches past that segment),
    or `ended` is true (every stream ended).
    `clock`: the streams' clock when `windows` are only part of them (default: `clock_of`)."""
    settings = settings or EventSettings()
    by_stream: dict[str, dict[tuple[str, int], TimedWindow]] = {}
    for w in windows:
        by_stream.setdefault(w.stream, {})[(w.uri, w.n)] = w  # a redelivered window counts once
    events: list[Event] = []
    for stream in sorted(by_stream):
        events += _stream_events(stream, list(by_stream[stream].values()), settings, ended, clock)
    return events


def _stream_events(stream: str, windows: list[TimedWindow], s: EventSettings,
                   ended: bool, clock: str | None) -> list[Event]:
    clock = clock or clock_of(windows)
    placed = sorted(((t, w) for w in windows if (t := w.times(clock)) is not None),
                    key=lambda tw: (tw[0][0], tw[0][1], tw[1].uri, tw[1].n))
    if not placed:
        return []
    horizon = max(t[1] for t, _ in placed)
    runs: list[tuple[list, bool, int]] = []  # (its windows, ended by another label, first place)
    current: list = []
    current_end, first = 0.0, 0
    end_uri = None  # a segment marked last that the current run has reached
    for i, (t, w) in enumerate(placed):
        if w.last and current:
            end_uri = w.uri
        if w.probability < s.min_probability:
            continue  # not confident: neither extends nor ends a run (a gap)
        other = bool(current) and w.label != current[0][1].label
        if current and (other or t[0] - current_end > s.max_gap or end_uri not in (None, w.uri)):
            runs.append((current, other, first))
            current = []
        if not current:
            first, end_uri, current_end = i, w.uri if w.last else None, t[1]
        current_end = max(current_end, t[1])
        current.append((t, w))
    if current:
        runs.append((current, False, first))
    stream_end = max((i for i, (_, w) in enumerate(placed) if w.last), default=-1)
    out = []
    for run, interrupted, first in runs:
        start, end = run[0][0][0], _end(run)
        if end - start < s.min_duration:
            continue
        closed = ended or interrupted or horizon - end > s.max_gap or stream_end >= first
        probs = [w.probability for _, w in run]
        segments = list(dict.fromkeys(w.uri for _, w in run))
        label = run[0][1].label
        out.append(Event(
            id=event_id(stream, label, start), stream=stream, label=label, start=start, end=end,
            peak_probability=max(probs), mean_probability=round(sum(probs) / len(probs), 6),
            windows=len(run), segments=segments, state="closed" if closed else "open",
            revision=2 * len(run) + (1 if closed else 0), clock=clock, probabilities=probs))
    return out


def _end(run: list) -> float:
    return max(t[1] for t, _ in run)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(seconds: float) -> str:
    return iso_utc(datetime.fromtimestamp(seconds, timezone.utc))
