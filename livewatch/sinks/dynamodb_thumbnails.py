"""The `dynamodb` sink's thumbnails, for ``livewatch ui --dynamodb``: the JPEG of a window lies in
S3 (the sagemaker classifier's endpoint wrote it there), and the item names it in its window's map
(``Windows[n].Thumbnail``, an ``s3://`` URI); this reads the item, then GETs the object.

The page asks by segment URI, window number and stream: the item is read by its key (GetItem on
``Stream`` and ``SegmentKey``). A caller that does not know the stream gets a Scan filtered on the
sort key instead, which reads the whole table. What is found is remembered (`CACHE_SIZE`
segments), so the windows of one segment cost one read. The object is served only if it looks like what the
endpoint writes (a JPEG, at most `MAX_BYTES`), whatever bucket the item names. A thumbnail that
cannot be read (gone, access denied, S3 unreachable) is None, with a warning in the log, and a
table that cannot be read a ConfigError (as for `query`): the page then shows none, nothing fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from typing import Any
from urllib.parse import urlparse

from ..aws_clients import describe, error_code, open_client
from ..contract import Detection
from ..errors import ConfigError
from .dynamodb_items import NO_STREAM, PARTITION_KEY, SORT_KEY, segment_key

log = logging.getLogger("livewatch.sinks.dynamodb")

CACHE_SIZE = 512  # segments whose window thumbnails are remembered
MAX_BYTES = 1 << 20  # the endpoint's JPEGs are ~10 KB
JPEG = b"\xff\xd8"


class Thumbnails:
    """One sink's reader: the S3 client (in the sink's exit stack) and the URIs found so far."""

    def __init__(self, sink):
        self.sink = sink
        self._stack: contextlib.AsyncExitStack | None = None
        self._s3 = None
        self._opening = asyncio.Lock()
        self._found: OrderedDict[str, list[str | None]] = OrderedDict()

    async def get(self, uri: str, n: int, stream: str | None = None) -> bytes | None:
        windows = await self.window_uris(uri, stream)
        where = windows[n] if 0 <= n < len(windows) else None
        return await self.read(where) if where else None

    async def window_uris(self, uri: str, stream: str | None = None) -> list[str | None]:
        """The thumbnail URI of each window of segment `uri`'s item ([] when there is no item);
        `stream`: the item's stream, where known (read by key, else searched for)."""
        if uri in self._found:
            self._found.move_to_end(uri)
            return self._found[uri]
        try:
            item = await (self._find(uri) if stream is None else self._get(uri, stream))
        except Exception as exc:  # the page answers 404, as for a store that cannot be read
            raise ConfigError(f"sink {self.sink.instance!r}: cannot read DynamoDB table "
                              f"{self.sink.options.table!r}: {describe(exc)}") from None
        if item is None:
            return []  # not written yet, perhaps: not remembered
        windows = [w.get("Thumbnail") for w in item.get("Windows", [])]
        self._found[uri] = windows
        while len(self._found) > CACHE_SIZE:
            self._found.popitem(last=False)
        return windows

    async def _get(self, uri: str, stream: str) -> dict[str, Any] | None:
        sink = self.sink
        key = segment_key(Detection(uri=uri, stream=stream))
        response = await sink._client.get_item(
            TableName=sink.options.table, ConsistentRead=True,
            Key={PARTITION_KEY: {"S": stream or NO_STREAM}, SORT_KEY: {"S": key}},
            ProjectionExpression="#windows", ExpressionAttributeNames={"#windows": "Windows"})
        item = response.get("Item")
        return sink.plain(item) if item else None

    async def _find(self, uri: str) -> dict[str, Any] | None:
        sink = self.sink
        kwargs: dict[str, Any] = {
            "TableName": sink.options.table, "ConsistentRead": True,
            "FilterExpression": "#key = :key", "ProjectionExpression": "#windows",
            "ExpressionAttributeNames": {"#key": SORT_KEY, "#windows": "Windows"},
            "ExpressionAttributeValues": {":key": {"S": segment_key(Detection(uri=uri, stream=""))}},
        }
        while True:
            response = await sink._client.scan(**kwargs)
            if response["Items"]:
                return sink.plain(response["Items"][0])
            if "LastEvaluatedKey" not in response:
                return None
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def read(self, where: str) -> bytes | None:
        parsed = urlparse(where)
        if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
            log.warning("sink %r: thumbnail %r is not an s3:// URI", self.sink.instance, where)
            return None
        s3 = await self._client()
        try:
            response = await s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
            async with response["Body"] as body:
                if response.get("ContentLength", 0) > MAX_BYTES:
                    log.warning("sink %r: %s is too large for a thumbnail", self.sink.instance, where)
                    return None
                data = await body.read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404"):
                log.warning("sink %r: cannot read thumbnail %s: %s", self.sink.instance, where,
                            describe(exc))
            return None
        if not data.startswith(JPEG):
            log.warning("sink %r: %s is not a JPEG", self.sink.instance, where)
            return None
        return data

    async def _client(self):
        async with self._opening:
            if self._s3 is None or self._stack is not self.sink._stack:  # the sink reopened
                self._stack = self.sink._stack
                self._s3 = await open_client(self._stack, "s3", self.sink.options)
            return self._s3


_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def thumbnail(sink, uri: str, n: int, stream: str | None = None) -> bytes | None:
    """`Sink.thumbnail` for a started or reading `sink` (its DynamoDB client is open)."""
    reader = _readers.get(sink)
    if reader is None:
        reader = _readers[sink] = Thumbnails(sink)
    return await reader.get(uri, n, stream)
