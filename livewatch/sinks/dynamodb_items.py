"""A detection as a DynamoDB item (the `dynamodb` sink's layout), with no AWS calls.

Key: partition ``Stream`` (S), sort ``SegmentKey`` (S) = the segment's URI (`Segment.key`), and
nothing else: whether the segment's time was known when it was written (the s3-events source learns
it from playlists, which may arrive after the segment) cannot change its key, so writing the same
segment twice, with or without its time, leaves one item (the later put replaces the earlier).

Time order comes from the local secondary index ``Timeline``: partition ``Stream``, sort ``When``
(S) = the program date-time (``2026-11-24T19:00:06.000Z``) when known, else the media sequence
zero-padded to 12 digits (``000000000042``: these sort before any date-time), else
``DateCreatedUTC``. ``When`` is not a key of the table, so it may change on redelivery.

The original sample's attributes ``S3Path``, ``Predicted``, ``Probability``, ``DateCreatedUTC``
come first; ours follow. Numbers are Decimals; absent values are left out, never empty strings.

Events (`livewatch.events`, kept by `dynamodb_events`) are items of their own kind in the same
table: partition ``Stream``, sort ``SegmentKey`` = ``event#`` + the event's id, ``Kind`` =
``event``, ``EventId``, ``Revision``, ``State``, ``Label``, ``Start`` / ``End`` (seconds on the
event's ``Clock``: epoch seconds for program-date-time), ``Seen`` (how many of the stream's windows
at or after its start the computation that wrote it had read), ``Event`` (the event as JSON),
``Notified`` (consumer -> revision delivered), and once it merged into an earlier event
``Retired`` and ``MergedInto``. A stream with a window of unknown program date-time has the item
``event#clock`` (``Kind`` = ``clock``): its events are on the sequence clock. These items have no
``When``, so the sparse ``Timeline`` index never lists them. No segment key starts with ``event#``:
sources give URIs (``s3://``, ``https://``, ``rtsp://``...) or absolute paths, and a URI that
did start with it would be hashed like one too long for a key.
"""
from __future__ import annotations

import hashlib
import json
from decimal import Context, Decimal
from typing import Any

from ..contract import Detection, iso_utc
from ..events import Event

PARTITION_KEY = "Stream"
SORT_KEY = "SegmentKey"
TIMELINE_INDEX = "Timeline"
TIMELINE_KEY = "When"
NO_STREAM = "-"
MAX_SORT_KEY_BYTES = 1024  # DynamoDB's limit on a sort key value
KIND, EVENT_KIND, CLOCK_KIND = "Kind", "event", "clock"
EVENT_PREFIX = "event#"  # the sort keys of items that are not segments
CLOCK_KEY = EVENT_PREFIX + "clock"
_CONTEXT = Context(prec=38, traps=[])  # DynamoDB keeps 38 significant digits


def number(value: float | int) -> Decimal:
    return _CONTEXT.create_decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def segment_key(detection: Detection) -> str:
    """The sort key: the segment's URI (its identity), hashed only if too long for a key."""
    uri = detection.uri
    if len(uri.encode()) <= MAX_SORT_KEY_BYTES and not uri.startswith(EVENT_PREFIX):
        return uri
    return "sha256:" + hashlib.sha256(uri.encode()).hexdigest()  # S3Path keeps the whole URI


def when(detection: Detection) -> str:
    """The ``Timeline`` index's sort key: program date-time, else sequence, else creation time."""
    if detection.start is not None:
        return iso_utc(detection.start)
    if detection.sequence is not None:
        return f"{detection.sequence:012d}"
    return detection.created_at


def to_item(d: Detection) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: d.stream or NO_STREAM,
        SORT_KEY: segment_key(d),
        "S3Path": d.uri,
        "Predicted": d.label,
        "Probability": d.probability,
        "DateCreatedUTC": d.created_at,
        TIMELINE_KEY: when(d),
        "Sequence": d.sequence,
        "Start": iso_utc(d.start) if d.start else None,
        "Duration": d.duration,
        "TopK": [{"Label": x.label, "Probability": number(x.probability)} for x in d.top_k] or None,
        "Model": d.model.name if d.model else None,
        "ModelVersion": (d.model.version or None) if d.model else None,
        "Frames": [Decimal(i) for i in d.frames] or None,
        "DecodeMs": d.decode_ms,
        "InferMs": d.infer_ms,
        "LatencyMs": d.latency_ms,
        "Error": d.error,
        # Seconds from the segment's first frame (add Start for absolute times), in time order;
        # Thumbnail: the s3:// URI of the window's JPEG, where the classifier wrote one.
        "Windows": [{"Start": number(w.start), "End": number(w.end),
                     "Frames": [Decimal(w.frames[0]), Decimal(w.frames[-1])], "Label": w.label,
                     "Probability": number(w.probability),
                     **({"Thumbnail": w.thumbnail_uri} if w.thumbnail_uri else {})}
                    for w in d.windows] or None,
        "ConcealedFrames": d.concealed_frames or None,
        "Truncated": True if d.truncated else None,
        "Last": True if d.last else None,  # the stream's last segment (its events close)
    }
    return {k: number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in item.items() if v is not None and v != ""}


def event_key(event_id: str) -> str:
    return EVENT_PREFIX + event_id


def event_values(event: Event, seen: int) -> dict[str, Any]:
    """An event item's attributes besides its key (`Notified`, `Retired` are kept apart)."""
    return {KIND: EVENT_KIND, "EventId": event.id, "Revision": Decimal(event.revision),
            "State": event.state, "Label": event.label, "Start": number(event.start),
            "End": number(event.end), "Clock": event.clock, "Seen": Decimal(seen),
            "Event": json.dumps(event.to_dict())}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as plain Python (Decimals to int/float), for reading it back."""
    def plain(v):
        if isinstance(v, Decimal):
            return int(v) if v == v.to_integral_value() and "." not in str(v) else float(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in item.items()}


def table_problem(table: dict[str, Any]) -> str | None:
    """What is wrong with a described table for this sink (None: nothing), in words."""
    schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
    if schema != {"HASH": PARTITION_KEY, "RANGE": SORT_KEY}:
        return f"is keyed {schema}"
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    wrong = {name: types.get(name) for name in (PARTITION_KEY, SORT_KEY) if types.get(name) != "S"}
    if wrong:
        return f"has key attributes of type {wrong}"
    indexes = {i["IndexName"]: i for i in table.get("LocalSecondaryIndexes") or []}
    if TIMELINE_INDEX not in indexes:
        return f"has no local secondary index {TIMELINE_INDEX!r} (it has {sorted(indexes) or 'none'})"
    index = {k["KeyType"]: k["AttributeName"] for k in indexes[TIMELINE_INDEX]["KeySchema"]}
    if index != {"HASH": PARTITION_KEY, "RANGE": TIMELINE_KEY} or types.get(TIMELINE_KEY) != "S":
        return f"has index {TIMELINE_INDEX!r} keyed {index} ({TIMELINE_KEY!r}: {types.get(TIMELINE_KEY)})"
    projection = indexes[TIMELINE_INDEX].get("Projection", {}).get("ProjectionType")
    if projection != "ALL":
        return f"has index {TIMELINE_INDEX!r} projecting {projection}, not ALL"
    return None


__all__ = ["PARTITION_KEY", "SORT_KEY", "TIMELINE_INDEX", "TIMELINE_KEY", "to_item", "from_item",
           "segment_key", "when", "table_problem", "event_key", "event_values", "EVENT_PREFIX", "CLOCK_KEY", "KIND"]
