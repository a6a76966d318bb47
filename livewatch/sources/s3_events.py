"""The `s3-events` source: segments an encoder writes to S3, from the SQS queue that the bucket
notifies (directly or through SNS). The original sample's S3 → Lambda trigger, as a long poll.

One message may carry several records, so several segments: the message is deleted only once every
one of them was acknowledged, and while any is still in work a heartbeat keeps extending its
visibility. A released segment leaves its message in the queue: it comes back after
`release_visibility` seconds (and after the queue's maxReceiveCount, goes to its dead-letter queue).
`.m3u8` notifications are not classified: the playlist is read to learn the media sequence and
program date-time of the segments it lists, and the message is deleted.

A segment's bytes are fetched only when a classifier calls `Segment.open()` (from its executor
thread): the download runs on the daemon's loop through the source's own aioboto3 client, so every
AWS call stays on one client with one configuration; a classifier that needs only the ``s3://`` URI
never downloads anything.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import io
import logging
import threading
import time
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from ..aws_clients import AwsOptions, describe, error_code, is_transient, open_client
from ..components import Emit, Source
from ..contract import Segment
from ..errors import ConfigError, SegmentError, TransientError
from ..hookspecs import hookimpl
from ..retry import retry
from .s3_messages import NotAnS3Event, ObjectCreated, matches, parse_body, stream_of
from .s3_playlists import PlaylistIndex

log = logging.getLogger("livewatch.sources.s3_events")

MISSING_OBJECT = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}
MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
GONE_RECEIPT = {"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight"}


class S3EventsOptions(AwsOptions):
    queue_url: str = Field(description="URL of the SQS queue the bucket's ObjectCreated events go to")
    suffixes: list[str] = Field([".ts"], description="classify keys that end with one of these")
    prefixes: list[str] = Field(default_factory=list, description="...and start with one of these (any if empty)")
    playlist_suffixes: list[str] = Field(
        [".m3u8"], description="keys read as HLS playlists for sequence and program date-time, not classified")
    wait_seconds: int = Field(20, ge=0, le=20, description="long-poll wait per ReceiveMessage")
    max_messages: int = Field(10, ge=1, le=10, description="messages per ReceiveMessage")
    visibility_timeout: int = Field(
        120, ge=2, le=43200, description="seconds a received message stays hidden; extended while in work")
    heartbeat_seconds: float | None = Field(
        None, gt=0, description="seconds between visibility extensions; default: visibility_timeout / 3")
    release_visibility: int = Field(
        10, ge=0, le=43200, description="seconds before a released (transiently failed) message comes back")
    max_segment_bytes: int = Field(512 * 2**20, gt=0, description="larger segments are error detections")
    download_timeout: float = Field(120.0, gt=0, description="seconds to fetch a segment's bytes")
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between polls while SQS fails")

    @model_validator(mode="after")
    def _heartbeat_in_time(self) -> "S3EventsOptions":
        if self.heartbeat_seconds is not None and self.heartbeat_seconds >= self.visibility_timeout:
            raise ValueError("heartbeat_seconds must be shorter than visibility_timeout")
        return self


@dataclass(eq=False)
class Message:
    """One SQS message in work: deleted once every segment it carries is acknowledged."""

    message_id: str
    receipt: str
    outstanding: set[int] = field(default_factory=set)
    released: bool = False
    heartbeat: asyncio.Task | None = None


@dataclass(frozen=True)
class AckHandle:
    message: Message
    index: int


class S3EventsSource(Source):
    """Segments written to S3, from the SQS queue of the bucket's ObjectCreated events."""

    name = "s3-events"
    Options = S3EventsOptions
    options: S3EventsOptions

    def __init__(self, options: S3EventsOptions, *, instance: str | None = None):
        super().__init__(options, instance=instance)
        self.playlists = PlaylistIndex()
        self._stack: contextlib.AsyncExitStack | None = None
        self._sqs = self._s3 = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._messages: set[Message] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._stack = contextlib.AsyncExitStack()
        o = self.options
        # A long poll holds the response for up to wait_seconds: the read timeout must outlast it.
        self._sqs = await open_client(self._stack, "sqs", o, read_timeout=max(o.read_timeout, o.wait_seconds + 10))
        self._s3 = await open_client(self._stack, "s3", o)
        try:
            await self._sqs.get_queue_attributes(QueueUrl=o.queue_url, AttributeNames=["QueueArn"])
        except Exception as exc:
            if error_code(exc) in MISSING_QUEUE:
                raise ConfigError(f"source {self.instance!r}: no SQS queue {o.queue_url} "
                                  f"({describe(exc)}); check `queue_url` and the region") from None
            if not is_transient(exc):
                raise ConfigError(f"source {self.instance!r}: cannot use queue {o.queue_url}: "
                                  f"{describe(exc)}") from None
            log.warning("source %r: SQS does not answer yet (%s); will keep polling", self.instance, describe(exc))

    async def close(self) -> None:
        for message in list(self._messages):
            _cancel(message)  # its visibility runs out and the queue delivers it again
        self._messages.clear()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    # -- polling ---------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        o = self.options
        log.info("source %r: polling %s for %s", self.instance, o.queue_url, ", ".join(o.suffixes))
        failing = False

        def failed(attempt: int, exc: BaseException) -> None:
            nonlocal failing
            failing = True

        while True:
            try:  # down, throttled, the queue gone: wait (with backoff) and poll again
                response = await retry(
                    self._receive, on=Exception, first=1.0, longest=o.retry_max_seconds,
                    stop=self.stopping, logger=log, on_retry=failed,
                    what=f"source {self.instance!r}: receiving from {o.queue_url}")
            except Exception:
                if self.stopping.is_set():
                    return  # the daemon stops: no more polling
                raise
            if failing:
                log.info("source %r: SQS answers again", self.instance)
                failing = False
            for raw in response.get("Messages", []):
                await self._take(raw, emit)

    async def _receive(self) -> dict:
        o = self.options
        return await self._sqs.receive_message(
            QueueUrl=o.queue_url, MaxNumberOfMessages=o.max_messages,
            WaitTimeSeconds=o.wait_seconds, VisibilityTimeout=o.visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )

    async def _take(self, raw: dict, emit: Emit) -> None:
        message_id, receipt = raw.get("MessageId", "?"), raw["ReceiptHandle"]
        try:
            parsed = parse_body(raw.get("Body", ""))
        except NotAnS3Event as exc:
            log.warning("source %r: message %s is not an S3 event (%s); deleted: %.200s",
                        self.instance, message_id, exc, raw.get("Body", ""))
            await self._forget(message_id, receipt)
            return
        if parsed.ignored:
            log.info("message %s: ignored records: %s", message_id, ", ".join(parsed.ignored))
        o = self.options
        segments = [r for r in parsed.records if matches(r.key, o.suffixes, o.prefixes)]
        for record in parsed.records:
            if record not in segments and matches(record.key, o.playlist_suffixes, o.prefixes):
                await self._read_playlist(record)
        if not segments:  # a test event, a playlist, or keys that do not match
            await self._forget(message_id, receipt)
            return
        message = Message(message_id, receipt, outstanding=set(range(len(segments))))
        self._messages.add(message)
        message.heartbeat = asyncio.create_task(self._heartbeat(message), name=f"heartbeat:{message_id}")
        now = time.time()
        for index, record in enumerate(segments):
            await emit(self._segment(record, AckHandle(message, index), now))

    def _segment(self, record: ObjectCreated, handle: AckHandle, seen_at: float) -> Segment:
        entry = self.playlists.lookup(record.bucket, record.key)
        return Segment(
            uri=record.uri,
            stream=stream_of(record.key),
            open=functools.partial(self._open, record.bucket, record.key),
            source=self.instance,
            sequence=entry.sequence if entry else None,
            start=entry.start if entry else None,
            duration=entry.duration if entry else None,
            last=entry.last if entry else False,
            ack_handle=handle,
            size=record.size,
            arrived_at=seen_at,
        )

    async def _read_playlist(self, record: ObjectCreated) -> None:
        try:
            text = (await self._download(record.bucket, record.key, 4 * 2**20)).decode("utf-8", "replace")
            count = self.playlists.update(record.bucket, record.key, text)
            log.debug("playlist %s lists %d segments", record.uri, count)
        except (SegmentError, TransientError, ValueError) as exc:
            # The next playlist notification carries the same information and more.
            log.warning("playlist %s not read: %s", record.uri, exc)

    # -- acknowledgement -------------------------------------------------------------------------

    async def ack(self, segment: Segment) -> None:
        await self._settle(segment.ack_handle, released=False)

    async def release(self, segment: Segment) -> None:
        await self._settle(segment.ack_handle, released=True)

    async def _settle(self, handle: AckHandle, released: bool) -> None:
        message = handle.message
        message.released |= released
        message.outstanding.discard(handle.index)
        if message.outstanding or message not in self._messages:
            return
        self._messages.discard(message)
        _cancel(message)
        if not message.released:
            await self._delete(message.message_id, message.receipt)
            return
        try:  # come back soon rather than when the (extended) visibility would have run out
            await self._sqs.change_message_visibility(
                QueueUrl=self.options.queue_url, ReceiptHandle=message.receipt,
                VisibilityTimeout=self.options.release_visibility)
        except Exception as exc:
            log.warning("message %s: could not shorten its visibility (%s); it comes back when it "
                        "runs out", message.message_id, describe(exc))

    async def _delete(self, message_id: str, receipt: str) -> None:
        try:
            await self._sqs.delete_message(QueueUrl=self.options.queue_url, ReceiptHandle=receipt)
        except Exception as exc:
            raise TransientError(f"deleting message {message_id} failed: {describe(exc)}") from exc

    async def _forget(self, message_id: str, receipt: str) -> None:
        """Delete a message that carries nothing to classify; if that fails, it comes back and is
        looked at again (the poll loop must not stop for it)."""
        try:
            await self._delete(message_id, receipt)
        except TransientError as exc:
            log.warning("source %r: %s; it will be delivered again", self.instance, exc)

    async def _heartbeat(self, message: Message) -> None:
        o = self.options
        every = o.heartbeat_seconds or o.visibility_timeout / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self._sqs.change_message_visibility(
                    QueueUrl=o.queue_url, ReceiptHandle=message.receipt, VisibilityTimeout=o.visibility_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if error_code(exc) in GONE_RECEIPT:
                    log.warning("message %s: no longer ours (%s)", message.message_id, describe(exc))
                    return
                log.warning("message %s: extending visibility failed (%s)", message.message_id, describe(exc))

    # -- the bytes -------------------------------------------------------------------------------

    def _open(self, bucket: str, key: str) -> io.BytesIO:
        """`Segment.open`: blocking, from an executor thread; the download runs on the loop."""
        if self._loop is None or self._s3 is None:
            raise TransientError(f"source {self.instance!r} is closed; s3://{bucket}/{key} not read")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("Segment.open() blocks: call it from an executor thread, not the event loop")
        future = asyncio.run_coroutine_threadsafe(
            self._download(bucket, key, self.options.max_segment_bytes), self._loop)
        try:
            return io.BytesIO(future.result(self.options.download_timeout))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TransientError(f"reading s3://{bucket}/{key} took longer than "
                                 f"download_timeout={self.options.download_timeout:g}s") from None
        except concurrent.futures.CancelledError:
            raise TransientError(f"reading s3://{bucket}/{key} was cancelled (shutting down)") from None

    async def _download(self, bucket: str, key: str, limit: int) -> bytes:
        uri = f"s3://{bucket}/{key}"
        try:
            response = await self._s3.get_object(Bucket=bucket, Key=key)
            size = response.get("ContentLength")
            body = response["Body"]
            async with body:  # releases the connection (aiohttp's response) however this ends
                if size is not None and size > limit:
                    raise SegmentError(f"{uri} is {size} bytes, more than max_segment_bytes={limit}")
                chunks, total = [], 0
                while chunk := await body.read(1 << 20):  # the StreamingBody's read, not aiohttp's
                    total += len(chunk)
                    if total > limit:
                        raise SegmentError(f"{uri} is more than max_segment_bytes={limit} bytes")
                    chunks.append(chunk)
            return b"".join(chunks)
        except (SegmentError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if error_code(exc) in MISSING_OBJECT:
                raise SegmentError(f"segment no longer in S3: {uri} ({describe(exc)}); deleted or "
                                   "expired before it was classified") from None
            # Transient, or a permission problem that a fix of the role cures: redeliver, never drop.
            raise TransientError(f"reading {uri} failed: {describe(exc)}") from exc


def _cancel(message: Message) -> None:
    if message.heartbeat is not None:
        message.heartbeat.cancel()
        message.heartbeat = None


@hookimpl
def register_sources(register):
    register(S3EventsSource)
