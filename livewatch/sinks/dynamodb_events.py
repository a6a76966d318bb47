"""Events in the `dynamodb` sink's table (layout: `dynamodb_items`), so that a fleet of daemons
on one queue builds one set of events.

After a detection's item is stored, `EventTable.update` recomputes its stream's events around it
as `local_events.update_events` does for the local store: from the stream's windows read back
through the ``Timeline`` index (strongly consistent), over a span from a little before the
segment to the stream's end, widened backwards while a run could cross its start. Daemons compute
at once from what each has read, so:

- an event item is only replaced by a computation that read more of its stream from the event's
  start on (``Seen``), or as much with a higher revision: a late answer from a daemon that knew
  less never undoes one that knew more. (Not on the revision alone: a late window of another label
  splits an event, and the part that keeps its id has fewer windows.) A ConditionalCheckFailed is
  the normal answer to a computation that knew less.
- an event that vanished from the span (merged into one that starts earlier, or on another clock)
  is retired as `local_events._retire` does (closed, revision + 1, ``merged_into``), conditionally
  on the revision read.
- then the span's windows and the stream's clock are read again, and the computation runs again
  if they changed. Reads are strongly consistent, so of two computations one reads after the
  other's detection is stored; the last to read sees every window, and a write from one that saw
  less, landing after it, is followed by that writer's own second read, which sees the difference.
  (`MAX_ROUNDS` bounds this under a stream that keeps changing; its next segment redoes it.)

The stream's clock is program-date-time unless the item ``event#clock`` says a window of it has
none (written before such a detection, so whoever reads the detection reads the mark); on the
sequence clock the whole stream is read each time, as times are not comparable with sequences.
"""
from __future__ import annotations

import bisect
import json
import logging
import math
import re
from datetime import datetime, timezone
from typing import Any

from ..contract import Detection, iso_utc
from ..errors import TransientError
from ..events import PDT, SEQUENCE, Event, EventSettings, TimedWindow, derive, windows_of
from ..aws_clients import describe, error_code
from .dynamodb_items import (CLOCK_KEY, CLOCK_KIND, EVENT_KIND, EVENT_PREFIX, KIND, NO_STREAM,
                             PARTITION_KEY, SORT_KEY, TIMELINE_INDEX, TIMELINE_KEY, event_key,
                             event_values, from_item, number)
from .dynamodb_read import to_detection
from .local_events import _reaches_back

log = logging.getLogger("livewatch.sinks.dynamodb")

MAX_ROUNDS = 5
#: seconds a segment may start before a window of it (segments are shorter than this)
SEGMENT_SLACK = 120.0
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")
RETIRED, MERGED_INTO, NOTIFIED = "Retired", "MergedInto", "Notified"
_NAMES = {"#p": PARTITION_KEY, "#k": SORT_KEY, "#kind": KIND, "#seen": "Seen", "#rev": "Revision",
          "#retired": RETIRED, "#merged": MERGED_INTO, "#notified": NOTIFIED}


class EventTable:
    """The event items of one `DynamoDBSink`'s table, through its client."""

    def __init__(self, sink):
        self.sink = sink

    @property
    def settings(self) -> EventSettings:
        return self.sink.event_settings or EventSettings()

    async def call(self, operation: str, **kwargs) -> dict:
        """One DynamoDB call; any failure is transient (the daemon retries the segment, and
        computing its events again is idempotent). None: the write's condition failed."""
        used = set(_PLACEHOLDER.findall(" ".join(v for k, v in kwargs.items() if k.endswith("Expression"))))
        for key in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            if key in kwargs:  # DynamoDB refuses placeholders no expression uses
                kwargs[key] = {k: v for k, v in kwargs[key].items() if k in used}
        try:
            return await getattr(self.sink._client, operation)(TableName=self.sink.options.table, **kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise TransientError(f"DynamoDB events {operation} failed: {describe(exc)}") from exc

    # -- keeping them ----------------------------------------------------------------------------

    async def mark_untimed(self, detection: Detection) -> None:
        """Before a detection with windows and no program date-time is stored: its stream's
        events are on the sequence clock from now on."""
        await self.call("put_item", Item=self._plain_to_ddb({
            PARTITION_KEY: detection.stream or NO_STREAM, SORT_KEY: CLOCK_KEY, KIND: CLOCK_KIND,
            "Clock": SEQUENCE}))

    async def update(self, detection: Detection) -> None:
        """Bring `detection`'s stream's events up to date around it (its item is stored)."""
        new = windows_of(detection)
        if not new:
            return
        partition = detection.stream or NO_STREAM
        for _ in range(MAX_ROUNDS):
            clock, since, seen = await self._round(partition, new)
            if (await self._clock(partition), frozenset(await self._windows(partition, clock, since))) \
                    == (clock, seen):
                return
        log.info("stream %r: its windows kept changing while its events were computed; the next "
                 "segment's computation brings them up to date", partition)

    async def _round(self, partition: str, new: list[TimedWindow]):
        s = self.settings
        clock = await self._clock(partition)
        stored = [i for i in await self.items(partition) if i.get(KIND) == EVENT_KIND]
        active = [i for i in stored if RETIRED not in i]
        placed = [t for w in new if (t := w.times(clock)) is not None]
        if clock == SEQUENCE or not placed or any(i["Clock"] != clock for i in active):
            since = -math.inf
        else:
            since = min(a for a, _ in placed) - s.max_gap - max(b - a for a, b in placed)
            # open events may close now that the stream moved on: recompute from the first of them
            since = min([since] + [i["Start"] for i in active if i["State"] == "open"])
        step = 2 * (s.max_gap + s.min_duration + 1.0)
        while True:
            windows = await self._windows(partition, clock, since)
            if since == -math.inf or not _reaches_back(windows, clock, since, s):
                break
            since -= step
            step *= 2  # a long event is found in a few reads
            if not await self._anything_before(partition, since):
                since = -math.inf
        events = derive(windows, s, clock=clock)
        await self._write(partition, events, windows, clock, since, active)
        return clock, since, frozenset(windows)

    async def _write(self, partition: str, events: list[Event], windows: list[TimedWindow],
                     clock: str, since: float, active: list[dict]) -> None:
        starts = sorted(t[0] for w in windows if (t := w.times(clock)) is not None)
        current = {i["EventId"]: i for i in active}
        for e in events:
            seen = len(starts) - bisect.bisect_left(starts, e.start)
            old = current.get(e.id)
            if old is not None and (old["Seen"], old["Revision"]) >= (seen, e.revision):
                continue  # what the table holds was computed from as much
            values = event_values(e, seen)
            await self.call(
                "update_item", Key=self._key(partition, event_key(e.id)),
                UpdateExpression="SET " + ", ".join(f"#a{n} = :a{n}" for n in range(len(values)))
                + ", #notified = if_not_exists(#notified, :empty) REMOVE #retired, #merged",
                ConditionExpression="attribute_not_exists(#k) OR attribute_exists(#retired) OR "
                                    "#seen < :seen OR (#seen = :seen AND #rev < :rev)",
                ExpressionAttributeNames={**_NAMES, **{f"#a{n}": k for n, k in enumerate(values)}},
                ExpressionAttributeValues=self._plain_to_ddb({
                    **{f":a{n}": v for n, v in enumerate(values.values())},
                    ":empty": {}, ":seen": values["Seen"], ":rev": values["Revision"]}))
        ids = {e.id for e in events}
        for old in active:
            if old["EventId"] not in ids and (old["Clock"] != clock or old["Start"] >= since):
                await self._retire(partition, old, events)

    async def _retire(self, partition: str, old: dict, events: list[Event]) -> None:
        """Close, as `local_events._retire` does, an event that vanished (merged into one that
        starts earlier, which `merged_into` names), so a sink told it opened is told it ended."""
        into = next((e.id for e in events if e.label == old["Label"] and e.clock == old["Clock"]
                     and e.start <= old["End"] and e.end >= old["Start"]), None)
        event = {**json.loads(old["Event"]), "state": "closed", "revision": old["Revision"] + 1,
                 "merged_into": into}
        values = {":rev": number(old["Revision"] + 1), ":was": number(old["Revision"]),
                  ":closed": "closed", ":event": json.dumps(event), ":yes": True}
        if into:
            values[":into"] = into
        await self.call(
            "update_item", Key=self._key(partition, event_key(old["EventId"])),
            UpdateExpression="SET #rev = :rev, #state = :closed, #event = :event, #retired = :yes"
                             + (", #merged = :into" if into else " REMOVE #merged"),
            ConditionExpression="#rev = :was AND attribute_not_exists(#retired)",
            ExpressionAttributeNames={**_NAMES, "#state": "State", "#event": "Event"},
            ExpressionAttributeValues=self._plain_to_ddb(values))

    async def _clock(self, partition: str) -> str:
        found = await self.call("get_item", Key=self._key(partition, CLOCK_KEY), ConsistentRead=True)
        return SEQUENCE if found and "Item" in found else PDT

    async def _windows(self, partition: str, clock: str, since: float) -> list[TimedWindow]:
        """The stream's windows that start at or after `since` on `clock` (all: -inf)."""
        if since == -math.inf or clock == SEQUENCE:
            items = await self._timeline(partition)
        else:
            items = await self._timeline(partition, iso_utc(_utc(since - SEGMENT_SLACK)))
        windows = [w for i in items for w in windows_of(to_detection(i))]
        if since == -math.inf:
            return windows
        return [w for w in windows if (t := w.times(clock)) is not None and t[0] >= since]

    async def _anything_before(self, partition: str, since: float) -> bool:
        """Whether a segment of the stream starts before `since` (program-date-time clock):
        ``When`` between "1" and its time leaves out the zero-padded sequences."""
        found = await self.call(
            "query", IndexName=TIMELINE_INDEX, ConsistentRead=True, Limit=1,
            KeyConditionExpression="#p = :p AND #w BETWEEN :lo AND :hi",
            ExpressionAttributeNames={"#p": PARTITION_KEY, "#w": TIMELINE_KEY},
            ExpressionAttributeValues={":p": {"S": partition}, ":lo": {"S": "1"},
                                       ":hi": {"S": iso_utc(_utc(since))}})
        return bool(found["Items"])

    async def _timeline(self, partition: str, since: str | None = None) -> list[dict]:
        try:
            return await self.sink.timeline(partition, since=since)
        except Exception as exc:
            raise TransientError(f"DynamoDB timeline read failed: {describe(exc)}") from exc

    async def items(self, partition: str | None) -> list[dict]:
        """Every event#-keyed item of one stream (Query), or of all (Scan filtered on Kind)."""
        if partition is not None:
            kwargs = {"KeyConditionExpression": "#p = :p AND begins_with(#k, :prefix)",
                      "ExpressionAttributeNames": {"#p": PARTITION_KEY, "#k": SORT_KEY},
                      "ExpressionAttributeValues": {":p": {"S": partition},
                                                    ":prefix": {"S": EVENT_PREFIX}}}
            operation = "query"
        else:
            kwargs = {"FilterExpression": "#kind = :event", "ExpressionAttributeNames":
                      {"#kind": KIND}, "ExpressionAttributeValues": {":event": {"S": EVENT_KIND}}}
            operation = "scan"
        out = []
        while True:
            response = await self.call(operation, ConsistentRead=True, **kwargs)
            out += [from_item(self.sink.plain(i)) for i in response["Items"]]
            if "LastEvaluatedKey" not in response:
                return out
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _key(self, partition: str, sort: str) -> dict:
        return {PARTITION_KEY: {"S": partition}, SORT_KEY: {"S": sort}}

    def _plain_to_ddb(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self.sink._serialize(number(v) if isinstance(v, float) else v)
                for k, v in values.items()}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(max(seconds, 0.0), timezone.utc)
