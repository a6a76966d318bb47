"""The `local` sink, the default: an embedded SQLite store of detections, one row per segment,
and of their windows, one row per window (`livewatch detections --windows`).

SQLite because it is in the standard library, durable (WAL + synchronous=FULL: `write` returns
only once the row is on disk, which is what lets the daemon acknowledge), and queryable by
`livewatch detections`. Writes are upserts keyed by the segment URI, so redelivery leaves one row.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, TypeVar

from pydantic import Field

from ..components import DetectionQuery, Options, Sink
from ..contract import Detection, iso_utc
from ..errors import ConfigError
from ..events import EventSettings
from ..hookspecs import hookimpl
from .local_events import (SCHEMA as EVENTS_SCHEMA, mark_notified, pending_events, query_events,
                           update_events)

DEFAULT_PATH = "livewatch-data/detections.db"
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    uri         TEXT PRIMARY KEY,
    stream      TEXT NOT NULL,
    sequence    INTEGER,
    at          TEXT NOT NULL,  -- UTC ISO-8601: the segment's program date-time, else created_at
    label       TEXT,
    probability REAL,
    error       TEXT,
    created_at  TEXT NOT NULL,
    detection   TEXT NOT NULL   -- the whole detection as JSON
);
CREATE INDEX IF NOT EXISTS detections_stream_at ON detections (stream, at);
CREATE TABLE IF NOT EXISTS windows (
    uri          TEXT NOT NULL,     -- the segment's (detections.uri)
    n            INTEGER NOT NULL,  -- the window's place in its segment, from 0
    stream       TEXT NOT NULL,
    sequence     INTEGER,
    at           TEXT NOT NULL,     -- UTC ISO-8601: `start`, else the segment's `at` (for order)
    start        TEXT,              -- UTC ISO-8601, when the segment's program date-time is known
    end          TEXT,
    offset_start REAL NOT NULL,     -- seconds from the segment's first frame
    offset_end   REAL NOT NULL,
    first_frame  INTEGER NOT NULL,
    last_frame   INTEGER NOT NULL,
    label        TEXT NOT NULL,
    probability  REAL NOT NULL,
    PRIMARY KEY (uri, n)
);
CREATE INDEX IF NOT EXISTS windows_stream_at ON windows (stream, at);
CREATE TABLE IF NOT EXISTS thumbnails (  -- a JPEG of each window's middle frame (the web page)
    uri  TEXT NOT NULL,     -- the segment's (detections.uri)
    n    INTEGER NOT NULL,  -- the window's (windows.n)
    jpeg BLOB NOT NULL,
    PRIMARY KEY (uri, n)
);
"""

INSERT_WINDOW = """
INSERT INTO windows (uri, n, stream, sequence, at, start, end, offset_start, offset_end,
                     first_frame, last_frame, label, probability)
VALUES (:uri, :n, :stream, :sequence, :at, :start, :end, :offset_start, :offset_end,
        :first_frame, :last_frame, :label, :probability)
"""

UPSERT = """
INSERT INTO detections (uri, stream, sequence, at, label, probability, error, created_at, detection)
VALUES (:uri, :stream, :sequence, :at, :label, :probability, :error, :created_at, :detection)
ON CONFLICT (uri) DO UPDATE SET
    stream = excluded.stream, sequence = excluded.sequence, at = excluded.at,
    label = excluded.label, probability = excluded.probability, error = excluded.error,
    created_at = excluded.created_at, detection = excluded.detection
"""


class LocalStore:
    """Blocking access to the store; the sink calls it from its own thread."""

    def __init__(self, path: str | Path, events: EventSettings | None = None):
        self.path = Path(path)
        self.event_settings = events or EventSettings()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        self.db.executescript(EVENTS_SCHEMA)

    def write(self, d: Detection) -> tuple[list[dict], list]:
        """Store `d` and its windows and bring its stream's events up to date, in one transaction;
        returns (the events replaced, the events now) around it (`local_events.update_events`)."""
        at = iso_utc(d.start) if d.start else d.created_at
        with self.db:  # one transaction: the detection, its windows and the events they change
            self.db.execute("DELETE FROM windows WHERE uri = ?", (d.uri,))
            self.db.executemany(INSERT_WINDOW, window_rows(d, at))
            self.db.execute("DELETE FROM thumbnails WHERE uri = ?", (d.uri,))
            self.db.executemany("INSERT INTO thumbnails (uri, n, jpeg) VALUES (?, ?, ?)",
                                [(d.uri, n, w.thumbnail) for n, w in enumerate(d.windows) if w.thumbnail])
            self.db.execute(UPSERT, {
                "uri": d.uri,
                "stream": d.stream,
                "sequence": d.sequence,
                "at": at,
                "label": d.label,
                "probability": d.probability,
                "error": d.error,
                "created_at": d.created_at,
                "detection": d.model_dump_json(),
            })
            return update_events(self.db, d, self.event_settings)

    def query(
        self,
        stream: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        errors_only: bool = False,
        limit: int | None = None,
    ) -> list[Detection]:
        """Detections in time order (oldest first); `limit` keeps the newest ones."""
        where, args = _stream_and_time(stream, since, until)
        if errors_only:
            where.append("error IS NOT NULL")
        sql = _select("SELECT detection FROM detections", where,
                      "at DESC, sequence DESC, uri DESC", limit)
        rows = self.db.execute(sql, args).fetchall()
        return [Detection.model_validate(json.loads(r["detection"])) for r in reversed(rows)]

    def windows(
        self,
        stream: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """Windows in time order (oldest first), as rows of the windows table; `since`/`until`
        compare with their absolute start (the segment's time where that is unknown); `limit`
        keeps the newest ones."""
        where, args = _stream_and_time(stream, since, until)
        sql = _select("SELECT * FROM windows", where, "at DESC, offset_start DESC, uri DESC", limit)
        return [dict(r) for r in reversed(self.db.execute(sql, args).fetchall())]

    def thumbnail(self, uri: str, n: int) -> bytes | None:
        """The JPEG of window `n` of segment `uri`, if stored."""
        row = self.db.execute("SELECT jpeg FROM thumbnails WHERE uri = ? AND n = ?", (uri, n)).fetchone()
        return bytes(row["jpeg"]) if row else None

    def events(self, stream: str | None = None, since: datetime | None = None,
               until: datetime | None = None, label: str | None = None,
               limit: int | None = None) -> list[dict]:
        """Events (`livewatch.events.Event.to_dict()`) overlapping [since, until), oldest first."""
        return query_events(self.db, stream, since.timestamp() if since else None,
                            until.timestamp() if until else None, label, limit)

    def streams(self) -> list[tuple[str, int, str]]:
        """(stream, detections, latest time) for each stream."""
        return [tuple(r) for r in self.db.execute(
            "SELECT stream, COUNT(*), MAX(at) FROM detections GROUP BY stream ORDER BY stream")]

    def close(self) -> None:
        self.db.close()


def window_rows(d: Detection, at: str) -> list[dict]:
    """The windows table's rows for `d`: absolute times when its program date-time is known."""
    rows = []
    for n, w in enumerate(d.windows):
        start = iso_utc(d.start + timedelta(seconds=w.start)) if d.start else None
        rows.append({
            "uri": d.uri, "n": n, "stream": d.stream, "sequence": d.sequence,
            "at": start or at, "start": start,
            "end": iso_utc(d.start + timedelta(seconds=w.end)) if d.start else None,
            "offset_start": w.start, "offset_end": w.end,
            "first_frame": w.frames[0], "last_frame": w.frames[-1],
            "label": w.label, "probability": w.probability,
        })
    return rows


class LocalOptions(Options):
    path: Path = Field(Path(DEFAULT_PATH), description="the SQLite file (created if missing)")


class LocalSink(Sink):
    """Stores detections in an embedded SQLite file (the default sink)."""

    name = "local"
    Options = LocalOptions

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.instance}")
        try:
            self._store = await self._run(LocalStore, self.options.path,
                                          self.event_settings or EventSettings())
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"sink {self.instance!r}: cannot open {self.options.path}: {exc}") from exc

    queryable = True

    @classmethod
    def for_path(cls, path: Path) -> LocalOptions:
        return LocalOptions(path=path)

    async def query(self, query: DetectionQuery) -> list[Detection]:
        return await self._read(lambda store: store.query(
            stream=query.stream, since=query.since, until=query.until,
            errors_only=query.errors_only, limit=query.limit))

    async def query_windows(self, query: DetectionQuery) -> list[dict]:
        return await self._read(lambda store: store.windows(
            stream=query.stream, since=query.since, until=query.until, limit=query.limit))

    async def thumbnail(self, uri: str, n: int, stream: str | None = None) -> bytes | None:
        return await self._read(lambda store: store.thumbnail(uri, n))

    async def pending_events(self, consumer: str) -> list[tuple[dict, int | None]]:
        return await self._run(pending_events, self._store.db, consumer)

    async def mark_notified(self, consumer: str, event_id: str, revision: int) -> None:
        await self._run(mark_notified, self._store.db, consumer, event_id, revision)

    async def query_events(self, query: DetectionQuery) -> list[dict]:
        return await self._read(lambda store: store.events(
            stream=query.stream, since=query.since, until=query.until, label=query.label,
            limit=query.limit))

    async def _read(self, reading: Callable[["LocalStore"], T]) -> T:
        """`reading(store)` on a connection of its own to the existing file, in a thread: readers
        (the CLI, the web page) never share the writer's connection."""
        def read() -> T:
            if not self.options.path.is_file():
                raise ConfigError(f"no local store at {self.options.path} (has the daemon run "
                                  "yet? --db names another file)")
            store = LocalStore(self.options.path)
            try:
                return reading(store)
            finally:
                store.close()
        return await asyncio.to_thread(read)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def write(self, detection: Detection) -> None:
        await self._run(self._store.write, detection)

    async def close(self) -> None:
        if getattr(self, "_store", None) is not None:
            await self._run(self._store.close)
        if getattr(self, "_thread", None) is not None:
            self._thread.shutdown(wait=True)


@hookimpl
def register_sinks(register):
    register(LocalSink)


def _stream_and_time(stream: str | None, since: datetime | None,
                     until: datetime | None) -> tuple[list[str], list]:
    """WHERE terms (and their arguments) for a stream and an `at` range, `until` exclusive."""
    where, args = [], []
    for term, value in (("stream = ?", stream), ("at >= ?", since and iso_utc(since)),
                        ("at < ?", until and iso_utc(until))):
        if value:
            where.append(term)
            args.append(value)
    return where, args


def _select(select: str, where: list[str], order: str, limit: int | None) -> str:
    """`select` with its WHERE terms, newest first by `order`, at most `limit` rows."""
    sql = select + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}"
    return sql + (f" LIMIT {int(limit)}" if limit else "")
