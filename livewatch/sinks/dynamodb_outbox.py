"""Reading the event items of the `dynamodb` sink's table back: ``livewatch events`` and the UI
(`query_events`), and the outbox of `livewatch.notify` (`pending` / `mark`), with the local
store's meaning (`local_events.pending_events`): what each consumer was last delivered is the map
``Notified`` on the event item, raised only, so a fleet's daemons share it.

A consumer's first look scans the table for event items; after that only the streams this sink
updated since (or that still had something pending) are read, one Query each.
"""
from __future__ import annotations

import json
from datetime import datetime

from ..components import DetectionQuery
from ..events import PDT
from .dynamodb_events import NOTIFIED, RETIRED, EventTable
from .dynamodb_items import EVENT_KIND, KIND, NO_STREAM, PARTITION_KEY, SORT_KEY, event_key


async def query_events(table: EventTable, q: DetectionQuery) -> list[dict]:
    """The events (not retired) `q` selects, oldest first: `since`/`until` select by overlap
    (events on the sequence clock are all listed); `limit` keeps the newest."""
    items = await table.items((q.stream or NO_STREAM) if q.stream is not None else None)
    since, until = _seconds(q.since), _seconds(q.until)
    found = [i for i in items if i.get(KIND) == EVENT_KIND and RETIRED not in i
             and (not q.label or i["Label"] == q.label)
             and (since is None or i["Clock"] != PDT or i["End"] >= since)
             and (until is None or i["Clock"] != PDT or i["Start"] < until)]
    found.sort(key=lambda i: (i["Start"], i[PARTITION_KEY], i["Label"]))
    events = [json.loads(i["Event"]) for i in found]
    return events[-q.limit:] if q.limit else events


class Outbox:
    def __init__(self, table: EventTable):
        self.table = table
        self._to_read: dict[str, set[str]] = {}  # consumer -> streams to read (absent: scan all)
        self._partition: dict[str, str] = {}  # event id -> its stream's partition, as last read

    def touched(self, partition: str) -> None:
        """The stream's events were recomputed: every consumer reads it next time."""
        for streams in self._to_read.values():
            streams.add(partition)

    async def pending(self, consumer: str) -> list[tuple[dict, int | None]]:
        """Events `consumer` has not had at their current revision, then retired events it was
        told about but not that they ended."""
        if consumer in self._to_read:
            streams, self._to_read[consumer] = self._to_read[consumer], set()
            items = [i for s in sorted(streams) for i in await self.table.items(s)]
        else:
            self._to_read[consumer] = set()
            items = await self.table.items(None)
        current, retired = [], []
        for item in items:
            if item.get(KIND) != EVENT_KIND:
                continue
            delivered = item.get(NOTIFIED, {}).get(consumer)
            if RETIRED not in item and (delivered is None or delivered < item["Revision"]):
                current.append(item)
            elif RETIRED in item and delivered is not None and delivered < item["Revision"]:
                retired.append(item)
        current.sort(key=lambda i: (i["Start"], i[PARTITION_KEY], i["Label"]))
        self._to_read[consumer] |= {i[PARTITION_KEY] for i in current + retired}  # until delivered
        self._partition.update((i["EventId"], i[PARTITION_KEY]) for i in current + retired)
        return [(json.loads(i["Event"]), i.get(NOTIFIED, {}).get(consumer))
                for i in current + retired]

    async def mark(self, consumer: str, event_id: str, revision: int) -> None:
        """`consumer` has event `event_id` at `revision`: raise ``Notified[consumer]`` to it
        (never lower; a ConditionalCheckFailed means it was already as high)."""
        partition = self._partition.get(event_id)
        if partition is None:  # not from `pending`: find it
            found = [i for i in await self.table.items(None) if i.get("EventId") == event_id]
            if not found:
                return
            partition = found[0][PARTITION_KEY]
        await self.table.call(
            "update_item", Key=self.table._key(partition, event_key(event_id)),
            UpdateExpression="SET #notified.#c = :rev",
            ConditionExpression="attribute_exists(#k) AND (attribute_not_exists(#notified.#c) "
                                "OR #notified.#c < :rev)",
            ExpressionAttributeNames={"#notified": NOTIFIED, "#c": consumer, "#k": SORT_KEY},
            ExpressionAttributeValues={":rev": {"N": str(int(revision))}})


def _seconds(value: datetime | None) -> float | None:
    return value.timestamp() if value else None
