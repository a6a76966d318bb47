"""The `dynamodb` sink: one item per segment in a table keyed (``Stream``, ``SegmentKey``).

The item layout is `dynamodb_items`'s; the table is the one `templates_gen/results.py` makes: the
key is the segment's identity only (``SegmentKey`` = its URI), and the local secondary index
``Timeline`` (``Stream``, ``When``) gives a stream's detections in time order (`timeline`).
Writes that arrive together go out together: `write` queues its item and waits; a flusher sends
up to 25 items per BatchWriteItem (waiting `batch_wait_ms` for company), retries UnprocessedItems
with backoff and jitter, and resolves each `write` only once its own item is stored. Items are
PutRequests, so the same segment written twice is one item (the second overwrites the first),
whatever was known about its time either time.
Once its item is stored, `write` brings the stream's events up to date in the same table
(`dynamodb_events`), which `query_events` reads back and which is the outbox of the sinks that take
event changes (`pending_events`, `mark_notified`: `dynamodb_outbox`).
Throttling, 5xx, timeouts, a lost connection and a table that went away mid-run are
`TransientError`s (the daemon retries, then releases the segment); a missing table, or one
without the expected key schema and index, at `start` is a `ConfigError`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import Field

from ..aws_clients import AwsOptions, describe, error_code, is_transient, open_client
from ..components import DetectionQuery, Sink
from ..contract import Detection
from ..errors import ConfigError, LivewatchError, TransientError
from ..hookspecs import hookimpl
from ..retry import retry
from . import dynamodb_read
from .dynamodb_events import EventTable
from .dynamodb_outbox import Outbox, query_events
from .dynamodb_items import PARTITION_KEY, SORT_KEY, TIMELINE_INDEX, TIMELINE_KEY, table_problem, to_item

log = logging.getLogger("livewatch.sinks.dynamodb")

MAX_BATCH = 25  # BatchWriteItem's limit


class DynamoDBOptions(AwsOptions):
    table: str = Field(description="the detections table (partition key Stream, sort key SegmentKey, "
                       "local secondary index Timeline on When): the results stack's")
    batch_size: int = Field(MAX_BATCH, ge=1, le=MAX_BATCH, description="items per BatchWriteItem")
    batch_wait_ms: float = Field(
        20.0, ge=0, description="how long a write waits for others to share its batch")
    max_batches_in_flight: int = Field(4, ge=1, description="BatchWriteItem calls at once")
    unprocessed_retries: int = Field(
        8, ge=0, description="retries of UnprocessedItems (with backoff) before the write fails transiently")
    events: bool = Field(
        True, description="keep the activity events in the table too (a few more reads and writes "
        "per detection); false: detections only, and this table is no outbox for event changes")


class DynamoDBSink(Sink):
    """Writes detections to a DynamoDB table, one item per segment, and the events they make."""

    name = "dynamodb"
    Options = DynamoDBOptions
    options: DynamoDBOptions

    def __init__(self, options: DynamoDBOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client = None
        self._pending: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()
        self._opening = asyncio.Lock()
        self._events = EventTable(self)
        self._outbox = Outbox(self._events)

    async def _open(self) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._serialize, self._deserialize = TypeSerializer().serialize, TypeDeserializer().deserialize
        self._stack = contextlib.AsyncExitStack()
        self._client = await open_client(self._stack, "dynamodb", self.options)

    def plain(self, item: dict[str, Any]) -> dict[str, Any]:
        """An item as the client returns it ({"S": ...} and the like) as plain Python values."""
        return {k: self._deserialize(v) for k, v in item.items()}

    async def start(self) -> None:
        await self._open()
        table = self.options.table
        try:
            described = (await self._client.describe_table(TableName=table))["Table"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise ConfigError(f"sink {self.instance!r}: DynamoDB table {table!r} does not exist "
                                  "(check `table` and the region, or deploy the results stack)") from None
            raise ConfigError(f"sink {self.instance!r}: cannot describe DynamoDB table {table!r}: "
                              f"{describe(exc)}") from None
        problem = table_problem(described)
        if problem:
            raise ConfigError(
                f"sink {self.instance!r}: DynamoDB table {table!r} {problem}; the sink needs partition "
                f"key {PARTITION_KEY!r} and sort key {SORT_KEY!r} (both S) and the local secondary "
                f"index {TIMELINE_INDEX!r} on ({PARTITION_KEY!r}, {TIMELINE_KEY!r} S), as the results "
                "stack creates it. Fix: point `table` at such a table, or deploy the results stack "
                "(`livewatch deploy`); a table's keys and local indexes cannot be changed, so a table "
                "from an earlier results stack must go first, with its detections (`livewatch destroy "
                "--stack fleet --stack results`: the fleet imports the table's name)") from None
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"sink:{self.instance}:flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        for _, future in self._pending:
            if not future.done():
                future.set_exception(TransientError(f"sink {self.instance!r} closed before writing"))
        self._pending.clear()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    @property
    def keeps_events(self) -> bool:
        return self.options.events

    async def write(self, detection: Detection) -> None:
        if self._flusher is None:
            raise RuntimeError(f"{self!r} was not started")
        events = self.options.events
        if events and detection.windows and detection.start is None:  # before anyone can read it
            await self._events.mark_untimed(detection)
        item = to_item(detection)
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        await future
        if events:
            await self._events.update(detection)
            self._outbox.touched(item[PARTITION_KEY])

    # -- batching --------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        limit = asyncio.Semaphore(self.options.max_batches_in_flight)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if len(self._pending) < self.options.batch_size and self.options.batch_wait_ms:
                await asyncio.sleep(self.options.batch_wait_ms / 1000)
            while self._pending:
                batch = self._pending[: self.options.batch_size]
                del self._pending[: self.options.batch_size]
                await limit.acquire()
                task = asyncio.create_task(self._write_batch(batch))
                self._batches.add(task)
                task.add_done_callback(lambda t: (self._batches.discard(t), limit.release()))

    async def _write_batch(self, batch: list[tuple[dict[str, Any], asyncio.Future]]) -> None:
        try:
            await self._write_batch_once(batch)
        except Exception as exc:  # a bug must not leave a write() waiting for ever
            log.exception("sink %r: batch failed", self.instance)
            _settle([f for _, f in batch], LivewatchError(f"DynamoDB batch failed: {exc}"))

    async def _write_batch_once(self, batch: list[tuple[dict[str, Any], asyncio.Future]]) -> None:
        # One request per key (BatchWriteItem refuses duplicates): the latest detection wins. The
        # key is the segment's identity, so a redelivery replaces the item, timed or not.
        puts: dict[tuple[str, str], dict[str, Any]] = {}
        waiting: dict[tuple[str, str], list[asyncio.Future]] = {}
        for item, future in batch:
            key = (item[PARTITION_KEY], item[SORT_KEY])
            puts[key] = item
            waiting.setdefault(key, []).append(future)
        requests = [{"PutRequest": {"Item": {k: self._serialize(v) for k, v in item.items()}}}
                    for item in puts.values()]
        try:
            failed = await self._send(requests)
        except LivewatchError as exc:
            _settle([f for fs in waiting.values() for f in fs], exc)
            return
        for key, futures in waiting.items():
            _settle(futures, failed.get(key))

    async def _send(self, requests: list[dict]) -> dict[tuple[str, str], Exception]:
        """BatchWriteItem until every request went through (UnprocessedItems retried with
        backoff, `unprocessed_retries` times); the keys of the puts that did not."""
        table, pending, attempts = self.options.table, requests, 0

        async def write_batch() -> None:
            nonlocal pending, attempts
            attempts += 1
            try:
                response = await self._client.batch_write_item(RequestItems={table: pending})
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise TransientError(f"DynamoDB table {table!r} is gone ({describe(exc)})") from exc
                if is_transient(exc):
                    raise TransientError(f"DynamoDB write failed: {describe(exc)}") from exc
                raise LivewatchError(f"DynamoDB refused the write: {describe(exc)}") from exc
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if pending:
                raise _Unprocessed(f"{len(pending)} items unprocessed (throttled)")

        try:
            await retry(write_batch, on=_Unprocessed, attempts=self.options.unprocessed_retries + 1,
                        first=0.1, longest=5.0, stop=self.stopping, logger=log,
                        what=f"sink {self.instance!r}: BatchWriteItem")
        except _Unprocessed:
            error = TransientError(f"DynamoDB left {len(pending)} items unprocessed "
                                   f"{attempts} times (throttled)")
            return {_put_key(r): error for r in pending}
        return {}

    # -- reading ---------------------------------------------------------------------------------

    queryable = True  # read-only, without `start` (``livewatch ui --dynamodb``): `dynamodb_read`

    @classmethod
    def for_table(cls, table: str) -> DynamoDBOptions:
        return DynamoDBOptions(table=table)

    async def thumbnail(self, uri: str, n: int, stream: str | None = None) -> bytes | None:
        """The JPEG in S3 that window `n` of segment `uri`'s item names (`dynamodb_thumbnails`)."""
        from . import dynamodb_thumbnails

        await self._reader()
        return await dynamodb_thumbnails.thumbnail(self, uri, n, stream)

    async def query(self, query: DetectionQuery) -> list[Detection]:
        await self._reader()
        return await dynamodb_read.query(self, query)

    async def query_windows(self, query: DetectionQuery) -> list[dict]:
        await self._reader()
        return await dynamodb_read.query_windows(self, query)

    async def query_events(self, query: DetectionQuery) -> list[dict]:
        if not self.options.events:
            raise ConfigError(f"sink {self.instance!r} keeps no events (events = false)")
        await self._reader()
        return await query_events(self._events, query)

    async def pending_events(self, consumer: str) -> list[tuple[dict, int | None]]:
        return await self._outbox.pending(consumer)

    async def mark_notified(self, consumer: str, event_id: str, revision: int) -> None:
        await self._outbox.mark(consumer, event_id, revision)

    async def _reader(self) -> None:
        async with self._opening:  # one client, whoever asks first
            if self._client is None:
                await self._open()

    async def timeline(self, stream: str, limit: int | None = None, *, since: str | None = None,
                       until: str | None = None, newest_first: bool = False) -> list[dict[str, Any]]:
        """One stream's items in time order, from the ``Timeline`` index; `since` / `until` bound
        ``When`` (inclusive, compared as strings: ``2026-11-24T19:00:00.000Z``). ``Stream`` and
        ``When`` are reserved words: they are aliased."""
        condition, values = "#stream = :stream", {":stream": {"S": stream}}
        if since is not None and until is not None:
            condition += " AND #when BETWEEN :since AND :until"
        elif since is not None:
            condition += " AND #when >= :since"
        elif until is not None:
            condition += " AND #when <= :until"
        values.update({f":{k}": {"S": v} for k, v in (("since", since), ("until", until)) if v is not None})
        names = {"#stream": PARTITION_KEY}
        if since is not None or until is not None:
            names["#when"] = TIMELINE_KEY
        items, kwargs = [], {
            "TableName": self.options.table,
            "IndexName": TIMELINE_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,  # a local secondary index can be read consistently
        }
        if limit:
            kwargs["Limit"] = limit
        while True:
            response = await self._client.query(**kwargs)
            items += [self.plain(i) for i in response["Items"]]
            if "LastEvaluatedKey" not in response or (limit and len(items) >= limit):
                return items[:limit] if limit else items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _put_key(request: dict) -> tuple[str, str]:
    item = request["PutRequest"]["Item"]
    return item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]


def _settle(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # its write() was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


@hookimpl
def register_sinks(register):
    register(DynamoDBSink)


class _Unprocessed(Exception):
    """BatchWriteItem left items unprocessed: worth another attempt."""
