"""S3 event notifications as SQS delivers them: parsing, with no AWS calls.

A message body is one of
- an S3 event: ``{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ..},
  "object": {"key": "live%2Fcam1%2Fseg.ts", "size": ..}}}, ...]}`` (keys URL-encoded as in a query
  string: S3 writes a space as ``+``, moto also ``/`` as ``%2F``: decoded with ``unquote_plus``);
- the same wrapped by SNS: ``{"Type": "Notification", "Message": "<the S3 event as a string>"}``;
- S3's test event, sent when a notification is configured: ``{"Event": "s3:TestEvent", ...}``.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    event_time: str | None = None
    sequencer: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class ParsedMessage:
    records: list[ObjectCreated] = field(default_factory=list)
    test_event: bool = False
    #: records that are not ObjectCreated (removals, restores...) or could not be read
    ignored: list[str] = field(default_factory=list)


class NotAnS3Event(ValueError):
    """The body is not JSON, or not an S3 notification at all."""


def parse_body(body: str) -> ParsedMessage:
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise NotAnS3Event(f"not JSON: {exc}") from None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        return parse_body(doc["Message"])  # SNS → SQS, without raw message delivery
    if not isinstance(doc, dict):
        raise NotAnS3Event("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return ParsedMessage(test_event=True)
    records = doc.get("Records")
    if not isinstance(records, list):
        raise NotAnS3Event("no Records and not an s3:TestEvent")
    parsed = ParsedMessage()
    for record in records:
        try:
            event = str(record.get("eventName", ""))
            if record.get("eventSource", "aws:s3") != "aws:s3" or not event.startswith("ObjectCreated"):
                parsed.ignored.append(event or "?")
                continue
            s3 = record["s3"]
            obj = s3["object"]
            parsed.records.append(ObjectCreated(
                bucket=s3["bucket"]["name"],
                key=unquote_plus(obj["key"]),
                size=obj.get("size"),
                etag=obj.get("eTag"),
                event_time=record.get("eventTime"),
                sequencer=obj.get("sequencer"),
            ))
        except (AttributeError, KeyError, TypeError):
            parsed.ignored.append("malformed record")
    return parsed


def stream_of(key: str) -> str:
    """The stream a key belongs to: its parent folder (``live/cam1/seg_00042.ts`` → ``cam1``);
    a key at the bucket's root belongs to the stream ``-``."""
    parent = posixpath.basename(posixpath.dirname(key))
    return parent or "-"


def matches(key: str, suffixes: list[str], prefixes: list[str]) -> bool:
    return (not suffixes or key.endswith(tuple(suffixes))) and (
        not prefixes or key.startswith(tuple(prefixes)))
