"""The local store's events table: `livewatch.events` over the stored windows, kept current as
detections land, in the same transaction as their windows (so an event never runs ahead of the
windows behind it, and a redelivered segment changes nothing).

Each write recomputes only the affected span of its stream: from a little before the new windows
to the stream's end, widened backwards until no event can reach past the span's start. A span
always reaches the stream's end, so it holds any segment marked `last` that closes its events.
"""
from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone

from ..contract import Detection, iso_utc
from ..events import PDT, SEQUENCE, Event, EventSettings, TimedWindow, clock_of, derive, windows_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id        TEXT PRIMARY KEY,
    stream    TEXT NOT NULL,
    label     TEXT NOT NULL,
    t_start   REAL NOT NULL,  -- seconds on the event's clock (epoch seconds for program-date-time)
    t_end     REAL NOT NULL,
    clock     TEXT NOT NULL,
    state     TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    event     TEXT NOT NULL   -- Event.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS events_stream_start ON events (stream, t_start);
CREATE TABLE IF NOT EXISTS retired (  -- events a late segment merged into another (new start)
    id        TEXT PRIMARY KEY,
    revision  INTEGER NOT NULL,
    event     TEXT NOT NULL   -- its last form, closed, with `merged_into`
);
CREATE TABLE IF NOT EXISTS notified (  -- the revision of each event each consuming sink has had
    consumer  TEXT NOT NULL,
    id        TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    PRIMARY KEY (consumer, id)
);
"""

# A window's place on its stream's clock, in SQL, to select a span (Python computes exact times).
_WINDOWS = """
SELECT w.uri, w.n, w.stream, w.sequence, w.offset_start, w.offset_end, w.label, w.probability,
       json_extract(d.detection, '$.start') AS segment_start,
       json_extract(d.detection, '$.duration') AS duration,
       json_extract(d.detection, '$.last') AS last
FROM windows w JOIN detections d ON d.uri = w.uri
WHERE w.stream = :stream AND (NOT :pdt OR w.at >= :since_at)
  AND (CASE WHEN :pdt THEN (julianday(w.start) - 2440587.5) * 86400.0
      ELSE w.sequence * json_extract(d.detection, '$.duration') + w.offset_start END) >= :since
"""


def update_events(db: sqlite3.Connection, detection: Detection,
                  settings: EventSettings) -> tuple[list[dict], list[Event]]:
    """Recompute `detection.stream`'s events around `detection` (whose windows are stored).
    Returns (the stored events replaced, as dicts of the table's columns, the events now)."""
    new = windows_of(detection)
    if not new:
        return [], []
    stream = detection.stream
    missing_pdt = db.execute("SELECT EXISTS (SELECT 1 FROM windows WHERE stream = ? AND start IS "
                             "NULL)", (stream,)).fetchone()[0]
    clock = SEQUENCE if missing_pdt or clock_of(new) == SEQUENCE else PDT
    had_other_clock = db.execute("SELECT EXISTS (SELECT 1 FROM events WHERE stream = ? AND "
                                 "clock != ?)", (stream, clock)).fetchone()[0]
    placed = [t for w in new if (t := w.times(clock)) is not None]
    if had_other_clock or not placed:
        since = -math.inf
    else:
        longest = max(end - start for start, end in placed)
        since = min(start for start, _ in placed) - settings.max_gap - longest
        # open events may close now that the stream moved on: recompute from the first of them
        first_open = db.execute("SELECT MIN(t_start) FROM events WHERE stream = ? AND state = "
                                "'open'", (stream,)).fetchone()[0]
        if first_open is not None:
            since = min(since, first_open)
    while True:
        windows = _load(db, stream, clock, since)
        events = derive(windows, settings, clock=clock)
        if since == -math.inf or not _reaches_back(windows, clock, since, settings):
            break
        since -= 2 * (settings.max_gap + settings.min_duration + 1.0)
        if not db.execute("SELECT EXISTS (SELECT 1 FROM windows w JOIN detections d ON d.uri = "
                          "w.uri WHERE w.stream = :stream AND (CASE WHEN :pdt THEN (julianday("
                          "w.start) - 2440587.5) * 86400.0 ELSE w.sequence * json_extract("
                          "d.detection, '$.duration') + w.offset_start END) < :since)",
                          {"stream": stream, "pdt": clock == PDT, "since": since}).fetchone()[0]:
            since = -math.inf  # nothing earlier: take the whole stream
    where, args = ("stream = ?", [stream]) if since == -math.inf else (
        "stream = ? AND t_start >= ?", [stream, since])
    old = [dict(r) for r in db.execute(
        f"SELECT id, label, t_start, t_end, state, revision, event FROM events WHERE {where}", args)]
    db.execute(f"DELETE FROM events WHERE {where}", args)
    db.executemany(
        "INSERT OR REPLACE INTO events (id, stream, label, t_start, t_end, clock, state, revision, "
        "event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.stream, e.label, e.start, e.end, e.clock, e.state, e.revision,
          json.dumps(e.to_dict())) for e in events])
    _retire(db, old, events)
    return old, events


def _retire(db: sqlite3.Connection, old: list[dict], events: list[Event]) -> None:
    """Keep, closed, the events that vanished (merged into one that starts earlier), so that a
    sink told they opened is told they ended (`merged_into` names the event that goes on)."""
    ids = {e.id for e in events}
    db.executemany("DELETE FROM retired WHERE id = ?", [(i,) for i in ids])
    for row in old:
        if row["id"] in ids:
            continue
        into = next((e.id for e in events if e.label == row["label"] and e.start <= row["t_end"]
                     and e.end >= row["t_start"]), None)
        event = {**json.loads(row["event"]), "state": "closed", "revision": row["revision"] + 1,
                 "merged_into": into}
        db.execute("INSERT OR REPLACE INTO retired (id, revision, event) VALUES (?, ?, ?)",
                   (row["id"], row["revision"] + 1, json.dumps(event)))


def _load(db: sqlite3.Connection, stream: str, clock: str, since: float) -> list[TimedWindow]:
    since = -1e300 if since == -math.inf else since - 1.0
    since_at = "" if since < 0 else iso_utc(datetime.fromtimestamp(since, timezone.utc))
    rows = db.execute(_WINDOWS, {"stream": stream, "pdt": clock == PDT, "since": since,
                                 "since_at": since_at})  # `at` (indexed) narrows first
    return [TimedWindow(stream=r["stream"], uri=r["uri"], n=r["n"], label=r["label"],
                        probability=r["probability"], offset_start=r["offset_start"],
                        offset_end=r["offset_end"], sequence=r["sequence"],
                        segment_start=datetime.fromisoformat(r["segment_start"])
                        if r["segment_start"] else None, duration=r["duration"],
                        last=bool(r["last"]))
            for r in rows]


def _reaches_back(windows: list[TimedWindow], clock: str, since: float,
                  settings: EventSettings) -> bool:
    """Whether a confident window lies so close to the span's start that a run could cross it."""
    placed = [t for w in windows if w.probability >= settings.min_probability
              and (t := w.times(clock)) is not None]
    if not placed:
        return False
    longest = max(end - start for start, end in placed)
    return min(start for start, _ in placed) < since + settings.max_gap + longest


def pending_events(db: sqlite3.Connection, consumer: str) -> list[tuple[dict, int | None]]:
    """Events `consumer` has not had at their current revision, then the retired events it was
    told about but not that they ended."""
    rows = db.execute(
        "SELECT e.event, n.revision AS delivered FROM events e LEFT JOIN notified n "
        "ON n.consumer = ? AND n.id = e.id WHERE n.revision IS NULL OR n.revision < e.revision "
        "ORDER BY e.t_start, e.stream, e.label", (consumer,)).fetchall()
    rows += db.execute(
        "SELECT r.event, n.revision AS delivered FROM retired r JOIN notified n "
        "ON n.consumer = ? AND n.id = r.id WHERE n.revision < r.revision", (consumer,)).fetchall()
    return [(json.loads(r["event"]), r["delivered"]) for r in rows]


def mark_notified(db: sqlite3.Connection, consumer: str, event_id: str, revision: int) -> None:
    with db:
        db.execute("INSERT INTO notified (consumer, id, revision) VALUES (?, ?, ?) ON CONFLICT "
                   "(consumer, id) DO UPDATE SET revision = MAX(revision, excluded.revision)",
                   (consumer, event_id, revision))


def query_events(db: sqlite3.Connection, stream: str | None, since: float | None,
                 until: float | None, label: str | None, limit: int | None) -> list[dict]:
    """Stored events, oldest first; `since`/`until` in epoch seconds select by overlap (events
    on the sequence clock have no wall-clock time and are all listed); `limit` keeps the newest."""
    where, args = [], []
    for column, value in (("stream", stream), ("label", label)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        where.append(f"(clock != '{PDT}' OR t_end >= ?)")
        args.append(since)
    if until is not None:
        where.append(f"(clock != '{PDT}' OR t_start < ?)")
        args.append(until)
    sql = "SELECT event FROM events" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY t_start DESC, stream DESC, label DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [json.loads(r["event"]) for r in reversed(db.execute(sql, args).fetchall())]
