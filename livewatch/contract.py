"""The data contract between sources, classifiers and sinks (see DESIGN.md, "Data contract").

A source yields `Segment`s; a classifier turns each into a `Detection`; every sink writes every
detection; then the segment is acknowledged to its source through its `ack` handle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, Callable

from pydantic import BaseModel, Field


@dataclass(eq=False)
class Segment:
    """One media segment to classify.

    `open` returns a fresh binary file object positioned at the start of the segment's bytes; it is
    called from an executor thread, so it may block. `ack_handle` is opaque to everybody but the
    source that made the segment.
    """

    uri: str
    stream: str
    open: Callable[[], BinaryIO]
    source: str = ""
    sequence: int | None = None
    start: datetime | None = None
    duration: float | None = None
    ack_handle: Any = None
    size: int | None = None
    #: wall-clock time (time.time()) the source saw the segment complete; latency counts from here
    arrived_at: float = field(default_factory=time.time)
    #: where `start` comes from: "program-date-time", "rtcp" (the stream's wall clock), "arrival"
    start_clock: str | None = None
    #: the stream's last segment: its source knows no segment follows (an HLS playlist's
    #: EXT-X-ENDLIST after it); its stream's events close (DESIGN.md, "Event")
    last: bool = False

    @property
    def key(self) -> str:
        """The identity sinks use for idempotent writes: the same segment always has the same key."""
        return self.uri


class Label(BaseModel):
    label: str
    probability: float


class ModelInfo(BaseModel):
    name: str
    version: str = ""


def iso_utc(value: datetime) -> str:
    """``2026-11-24T19:00:00.000Z``: UTC, milliseconds, sortable as a string (a naive datetime is
    read as UTC). The one timestamp format of detections, stores and JSON logs."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    return iso_utc(datetime.now(timezone.utc))


class WindowResult(BaseModel):
    """One window of a segment: where it lies and what the model saw in it."""

    start: float  # seconds from the segment's first frame (PTS); add the segment's start for UTC
    end: float
    frames: list[int]  # [first, last] frame ids sampled
    label: str
    probability: float
    top_k: list[Label] = Field(default_factory=list)
    concealed_frames: int = 0
    #: a small JPEG of the window's middle frame (web page); never in JSON: sinks that keep it
    #: store it apart (the local store's thumbnails table)
    thumbnail: bytes | None = Field(None, exclude=True, repr=False)
    #: where that JPEG lies when the classifier wrote it elsewhere (``s3://bucket/key``: the
    #: sagemaker classifier's endpoint, `thumbnails`); in JSON, and in the DynamoDB item
    thumbnail_uri: str | None = None


class Detection(BaseModel):
    """What livewatch concluded about one segment: a label, or an `error` a user can act on."""

    uri: str
    stream: str
    sequence: int | None = None
    start: datetime | None = None
    duration: float | None = None
    label: str | None = None
    probability: float | None = None
    top_k: list[Label] = Field(default_factory=list)
    model: ModelInfo | None = None
    frames: list[int] = Field(default_factory=list)
    decode_ms: float | None = None
    infer_ms: float | None = None
    latency_ms: float | None = None
    created_at: str = Field(default_factory=utc_now_iso)
    error: str | None = None
    start_clock: str | None = None  # where `start` comes from (see Segment.start_clock)
    #: in time order; the segment-level label/probability/top_k are the mean of their probabilities
    windows: list[WindowResult] = Field(default_factory=list)
    #: window frames that did not decode and were concealed with the nearest decoded frame
    concealed_frames: int = 0
    segment_frames: int | None = None  # frames the segment held (from its first keyframe)
    expected_frames: int | None = None  # frames its playlist's (or container's) duration states
    truncated: bool = False  # classified on fewer frames than its stated duration holds
    notes: list[str] = Field(default_factory=list)  # how the segment was read, in words
    last: bool = False  # the stream's last segment (Segment.last): its events are closed

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def for_segment(cls, segment: Segment, **fields: Any) -> "Detection":
        """A detection that carries the segment's identity fields."""
        return cls(
            uri=segment.uri,
            stream=segment.stream,
            sequence=segment.sequence,
            start=segment.start,
            duration=segment.duration,
            start_clock=segment.start_clock,
            last=segment.last,
            **fields,
        )

    @classmethod
    def failed(cls, segment: Segment, error: str, **fields: Any) -> "Detection":
        return cls.for_segment(segment, error=error, **fields)

    def with_latency_from(self, segment: Segment) -> "Detection":
        self.latency_ms = round((time.time() - segment.arrived_at) * 1000.0, 1)
        return self
