"""Reading the `dynamodb` sink's table back (``livewatch ui --dynamodb``, ``detections``):
items to detections, one stream through the ``Timeline`` index, all streams by a scan."""
from __future__ import annotations

from typing import Any

from ..components import DetectionQuery
from ..contract import Detection, Label, ModelInfo, WindowResult, iso_utc
from ..errors import ConfigError
from .dynamodb_items import KIND, NO_STREAM, PARTITION_KEY, TIMELINE_KEY, from_item, when
from .local import window_rows


def to_detection(item: dict[str, Any]) -> Detection:
    """The detection an item was written from (as far as the item keeps it)."""
    i = from_item(item)
    model = ModelInfo(name=i["Model"], version=i.get("ModelVersion", "")) if "Model" in i else None
    return Detection(
        uri=i["S3Path"], stream="" if i[PARTITION_KEY] == NO_STREAM else i[PARTITION_KEY],
        sequence=i.get("Sequence"), start=i.get("Start"), duration=i.get("Duration"),
        label=i.get("Predicted"), probability=i.get("Probability"),
        top_k=[Label(label=t["Label"], probability=t["Probability"]) for t in i.get("TopK", [])],
        model=model, frames=i.get("Frames", []), decode_ms=i.get("DecodeMs"),
        infer_ms=i.get("InferMs"), latency_ms=i.get("LatencyMs"), created_at=i["DateCreatedUTC"],
        error=i.get("Error"), concealed_frames=i.get("ConcealedFrames", 0),
        truncated=i.get("Truncated", False), last=i.get("Last", False),
        windows=[WindowResult(start=w["Start"], end=w["End"], frames=w["Frames"], label=w["Label"],
                              probability=w["Probability"], thumbnail_uri=w.get("Thumbnail"))
                 for w in i.get("Windows", [])],
    )


async def query(sink, q: DetectionQuery) -> list[Detection]:
    """What `q` selects, oldest first (`limit` keeps the newest); `until` is exclusive."""
    since = iso_utc(q.since) if q.since else None
    until = iso_utc(q.until) if q.until else None
    try:
        if q.stream:
            items = await sink.timeline(q.stream, None if q.errors_only else q.limit, since=since,
                                        until=until, newest_first=True)
        else:
            items = await _scan(sink, since)
    except Exception as exc:
        raise ConfigError(f"sink {sink.instance!r}: cannot read DynamoDB table "
                          f"{sink.options.table!r}: {exc}") from None
    found = [to_detection(i) for i in items]
    found = [d for d in found if (until is None or when(d) < until) and (d.error or not q.errors_only)]
    found.sort(key=lambda d: (when(d), d.sequence or 0, d.uri))
    return found[-q.limit:] if q.limit else found


async def query_windows(sink, q: DetectionQuery) -> list[dict]:
    """The window rows of what `q` selects (as the local store's windows table has them)."""
    rows = []
    for d in await query(sink, DetectionQuery(stream=q.stream, since=q.since, until=q.until)):
        rows += window_rows(d, iso_utc(d.start) if d.start else d.created_at)
    rows.sort(key=lambda r: (r["at"], r["offset_start"], r["uri"]))
    return rows[-q.limit:] if q.limit else rows


async def _scan(sink, since: str | None) -> list[dict[str, Any]]:
    """Every detection item (event items, which have a ``Kind``, are left out)."""
    kwargs: dict[str, Any] = {"TableName": sink.options.table, "ConsistentRead": True,
                              "FilterExpression": "attribute_not_exists(#kind)",
                              "ExpressionAttributeNames": {"#kind": KIND}}
    if since is not None:
        kwargs["FilterExpression"] += " AND #when >= :since"
        kwargs["ExpressionAttributeNames"]["#when"] = TIMELINE_KEY
        kwargs["ExpressionAttributeValues"] = {":since": {"S": since}}
    items = []
    while True:
        response = await sink._client.scan(**kwargs)
        items += [sink.plain(i) for i in response["Items"]]
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
