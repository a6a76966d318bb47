"""The `dynamodb` sink over real HTTP, against moto and against dynalite (which, like DynamoDB,
rejects reserved words such as ``stream`` and ``when`` unless they are aliased). Both emulate local
secondary indexes (the ``Timeline`` index is created, kept up to date and queried in both); the
table is made from the `results` stack's declaration."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError

from livewatch.contract import Detection, Label, ModelInfo, WindowResult
from livewatch.errors import ConfigError, TransientError
from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
from livewatch.sinks.dynamodb_items import segment_key, to_item, when
from templates_gen import results

START = datetime(2026, 11, 24, 19, 0, 6, tzinfo=timezone.utc)


def detection(n: int = 42, *, stream: str = "cam1", start: datetime | None = START, **fields) -> Detection:
    return Detection(
        uri=f"s3://bucket/live/{stream}/seg_{n:05d}.ts", stream=stream, sequence=n, start=start,
        duration=6.0, label="archery", probability=0.8125,
        top_k=[Label(label="archery", probability=0.8125), Label(label="diving", probability=0.1)],
        model=ModelInfo(name="tiny-i3d", version="seed0"), frames=[10, 11, 12],
        decode_ms=12.5, infer_ms=80.25, latency_ms=300.0, **fields,
    )


@pytest.fixture(params=["moto", "dynalite"])
def backend(request, aws_env):
    """(endpoint_url, boto3 dynamodb client, emulator) for each backend."""
    if request.param == "moto":
        server = request.getfixturevalue("moto_server")
    else:
        server = request.getfixturevalue("dynalite")
        server.start()
    client = boto3.client("dynamodb", endpoint_url=server.endpoint_url)
    return server.endpoint_url, client, server


def make_table(client, name: str | None = None) -> str:
    """The detections table as the `results` stack declares it (keys, the Timeline index)."""
    name = name or f"detections-{uuid.uuid4().hex[:8]}"
    client.create_table(**results.create_table_args(name))
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    return name


def make_sink(endpoint: str, table: str, **options) -> DynamoDBSink:
    return DynamoDBSink(DynamoDBOptions(table=table, endpoint_url=endpoint, **options))


def scan(client, table: str) -> list[dict]:
    return client.scan(TableName=table, ConsistentRead=True)["Items"]


def test_every_item_carries_the_results_tables_keys_in_their_declared_types():
    """What the results stack declares (read from the template, not from the sink's constants):
    every item the sink makes has each key and index attribute, in the declared type."""
    table = results.template().to_dict()["Resources"]["DetectionsTable"]["Properties"]
    declared = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    keys = {k["AttributeName"] for k in table["KeySchema"]}
    keys |= {k["AttributeName"] for i in table["LocalSecondaryIndexes"] for k in i["KeySchema"]}
    assert keys == set(declared)
    unknown_time = detection(start=None).model_copy(update={"sequence": None})
    failed = detection().model_copy(update={"label": None, "probability": None, "top_k": [],
                                            "error": "not a video"})
    for made in (detection(), detection(start=None), unknown_time, failed):
        item = to_item(made)
        assert {name: type(item[name]).__name__ for name in declared} == {
            name: {"S": "str", "N": "Decimal", "B": "bytes"}[kind] for name, kind in declared.items()}


def test_item_layout_keeps_the_original_attributes_and_adds_ours():
    item = to_item(detection())
    assert item["Stream"] == "cam1"
    assert item["SegmentKey"] == "s3://bucket/live/cam1/seg_00042.ts"
    assert item["When"] == item["Start"] == "2026-11-24T19:00:06.000Z"
    assert item["S3Path"] == "s3://bucket/live/cam1/seg_00042.ts"
    assert item["Predicted"] == "archery" and item["Probability"] == Decimal("0.8125")
    assert item["DateCreatedUTC"].endswith("Z")
    assert item["TopK"][1] == {"Label": "diving", "Probability": Decimal("0.1")}
    assert item["Frames"] == [10, 11, 12] and item["Sequence"] == 42 and "Error" not in item
    # The key is the segment's identity only: what is known of its time changes `When`, not the key.
    untimed = detection(7, start=None)
    unnumbered = untimed.model_copy(update={"sequence": None, "created_at": "2026-11-24T21:00:00.000Z"})
    assert segment_key(detection(7)) == segment_key(untimed) == segment_key(unnumbered) == \
        "s3://bucket/live/cam1/seg_00007.ts"
    assert when(untimed) == "000000000007" and when(unnumbered) == "2026-11-24T21:00:00.000Z"
    assert to_item(unnumbered)["When"] == to_item(unnumbered)["DateCreatedUTC"]
    long = Detection(uri="s3://b/" + "x" * 1100 + ".ts", stream="cam1")  # over a sort key's 1024 bytes
    assert segment_key(long).startswith("sha256:") and segment_key(long) == segment_key(long.model_copy())
    assert to_item(long)["S3Path"] == long.uri
    failed = to_item(Detection(uri="s3://b/x.ts", stream="", error="not video"))
    assert failed["Stream"] == "-" and failed["Error"] == "not video" and "Predicted" not in failed
    assert "Windows" not in item and "ConcealedFrames" not in item and "Truncated" not in item
    assert "Last" not in item


def test_item_adds_a_windows_list_and_what_was_concealed():
    windows = [WindowResult(start=0.0, end=2.56, frames=[0, 62], label="archery", probability=0.9),
               WindowResult(start=2.48, end=5.04, frames=[62, 124], label="diving", probability=0.6)]
    item = to_item(detection(windows=windows, concealed_frames=2, truncated=True, last=True))
    assert item["Windows"] == [
        {"Start": Decimal("0.0"), "End": Decimal("2.56"), "Frames": [0, 62], "Label": "archery",
         "Probability": Decimal("0.9")},
        {"Start": Decimal("2.48"), "End": Decimal("5.04"), "Frames": [62, 124], "Label": "diving",
         "Probability": Decimal("0.6")}]
    assert item["ConcealedFrames"] == 2 and item["Truncated"] is True and item["Last"] is True
    assert (item["Predicted"], item["Probability"]) == ("archery", Decimal("0.8125"))  # as before


def test_item_windows_keep_their_thumbnail_uri():
    """Where the classifier wrote a window's JPEG (the sagemaker classifier's endpoint): in that
    window's map, and back on the detection read from the item; no attribute where there is none."""
    from livewatch.sinks.dynamodb_read import to_detection

    where = "s3://artifacts/thumbnails/bucket/live/cam1/seg_00042.ts/0.jpg"
    windows = [WindowResult(start=0.0, end=2.56, frames=[0, 62], label="archery", probability=0.9,
                            thumbnail_uri=where),
               WindowResult(start=2.48, end=5.04, frames=[62, 124], label="diving", probability=0.6)]
    item = to_item(detection(windows=windows))
    assert item["Windows"][0]["Thumbnail"] == where and "Thumbnail" not in item["Windows"][1]
    assert [w.thumbnail_uri for w in to_detection(item).windows] == [where, None]


async def test_writes_read_back_in_time_order_and_redelivery_leaves_one_item(backend):
    endpoint, client, _ = backend
    table = make_table(client)
    sink = make_sink(endpoint, table)
    await sink.start()
    try:
        for n in (3, 1, 2):
            await sink.write(detection(n, start=START.replace(second=n)))
        await sink.write(detection(2, start=START.replace(second=2)))  # redelivered: same key
        await sink.write(Detection(uri="s3://bucket/live/cam1/bad.ts", stream="cam1", error="not video",
                                   created_at="2026-11-24T19:00:02.500Z"))  # no time: when it was made
        timeline = await sink.timeline("cam1")
    finally:
        await sink.close()
    assert len(scan(client, table)) == 4
    assert [i.get("Sequence") for i in timeline] == [1, 2, None, 3]
    assert timeline[2]["Error"] == "not video" and timeline[2]["When"] == "2026-11-24T19:00:02.500Z"
    first = timeline[0]
    assert {"S3Path", "Predicted", "Probability", "DateCreatedUTC"} <= first.keys()
    assert first["TopK"][0] == {"Label": "archery", "Probability": Decimal("0.8125")}


async def test_concurrent_writes_go_out_in_batches(backend):
    endpoint, client, _ = backend
    table = make_table(client)
    sink = make_sink(endpoint, table, batch_wait_ms=50)
    await sink.start()
    calls = []
    sink._client.meta.events.register(  # an observer on the real client, nothing patched
        "provide-client-params.dynamodb.BatchWriteItem", lambda params, **_: calls.append(len(params["RequestItems"][table])))
    try:
        await asyncio.gather(*(sink.write(detection(n, start=None)) for n in range(60)))
        await asyncio.gather(*(sink.write(detection(n, start=None)) for n in range(5)))  # again
    finally:
        await sink.close()
    assert len(scan(client, table)) == 60
    assert max(calls) == 25 and len(calls) <= 5, calls


async def write_across_a_restart(endpoint: str, table: str, first: Detection, then: Detection) -> None:
    """`first` by one sink, `then` by another: a daemon restarted between two deliveries."""
    for d in (first, then):
        sink = make_sink(endpoint, table)
        await sink.start()
        try:
            await sink.write(d)
        finally:
            await sink.close()


async def test_a_segment_written_with_and_without_its_time_stays_one_item(backend):
    """The bug this key fixes: whether the segment's playlist was read before it (so its time was
    known) changes from one delivery to the next, and must not make a second item."""
    endpoint, client, _ = backend
    table = make_table(client)
    timed = detection(5)
    untimed = detection(5, start=None).model_copy(update={"sequence": None})
    numbered = detection(5, start=None)

    await write_across_a_restart(endpoint, table, untimed, timed)  # playlist read after the 1st
    [item] = scan(client, table)
    assert item["SegmentKey"]["S"] == timed.uri
    assert item["When"]["S"] == item["Start"]["S"] == "2026-11-24T19:00:06.000Z"  # it gained its time

    await write_across_a_restart(endpoint, table, numbered, timed)
    assert len(scan(client, table)) == 1

    # The reverse: written with its time, redelivered after a restart before the playlist was read.
    other = detection(6)
    await write_across_a_restart(endpoint, table, other, other.model_copy(
        update={"start": None, "sequence": None}))
    items = {i["SegmentKey"]["S"]: i for i in scan(client, table)}
    assert sorted(items) == [timed.uri, other.uri]
    assert "Start" not in items[other.uri]  # a put replaces the item: the later write's view


async def test_the_timeline_index_gives_one_streams_items_in_time_order(backend):
    endpoint, client, _ = backend
    table = make_table(client)
    sink = make_sink(endpoint, table)
    await sink.start()
    try:
        for n in (4, 1, 3, 2):  # out of order, two streams interleaved
            await sink.write(detection(n, start=START.replace(second=n)))
            await sink.write(detection(n, stream="cam2", start=START.replace(second=10 - n)))
        await sink.write(detection(9, start=None))  # its time not known yet: its sequence
        timeline = await sink.timeline("cam1")
        window = await sink.timeline("cam1", since="2026-11-24T19:00:02", until="2026-11-24T19:00:04")
        newest = await sink.timeline("cam1", limit=2, newest_first=True)
    finally:
        await sink.close()
    assert [i["Sequence"] for i in timeline] == [9, 1, 2, 3, 4]  # a sequence sorts before any time
    assert {i["Stream"] for i in timeline} == {"cam1"}
    assert [i["Sequence"] for i in window] == [2, 3]
    assert [i["Sequence"] for i in newest] == [4, 3]
    # What a user runs: Query on the index (Stream and When are reserved words, so aliased).
    response = client.query(
        TableName=table, IndexName="Timeline",
        KeyConditionExpression="#s = :s AND #w >= :t",
        ExpressionAttributeNames={"#s": "Stream", "#w": "When"},
        ExpressionAttributeValues={":s": {"S": "cam2"}, ":t": {"S": "2026-11-24T19:00:07"}})
    assert [i["Sequence"]["N"] for i in response["Items"]] == ["3", "2", "1"]
    assert {"S3Path", "Predicted", "Probability", "DateCreatedUTC"} <= response["Items"][0].keys()


async def test_reserved_words_are_aliased(dynalite, aws_env):
    dynalite.start()
    client = boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url)
    table = make_table(client)
    with pytest.raises(ClientError, match="reserved keyword"):  # what DynamoDB itself says
        client.query(TableName=table, KeyConditionExpression="Stream = :s",
                     ExpressionAttributeValues={":s": {"S": "cam1"}})
    with pytest.raises(ClientError, match="reserved keyword"):
        client.query(TableName=table, IndexName="Timeline",
                     KeyConditionExpression="#s = :s AND When > :t",
                     ExpressionAttributeNames={"#s": "Stream"},
                     ExpressionAttributeValues={":s": {"S": "cam1"}, ":t": {"S": "2026"}})
    sink = make_sink(dynalite.endpoint_url, table)
    await sink.start()
    try:
        await sink.write(detection())
        assert len(await sink.timeline("cam1")) == 1
        assert len(await sink.timeline("cam1", since="2026-11-24T19:00:00", until="2026-11-24T20")) == 1
    finally:
        await sink.close()


async def test_a_missing_table_is_a_config_error_at_start(backend):
    endpoint, _, _ = backend
    sink = make_sink(endpoint, "no-such-table")
    with pytest.raises(ConfigError, match="'no-such-table' does not exist"):
        await sink.start()
    await sink.close()


async def test_a_table_with_another_key_is_a_config_error(backend):
    endpoint, client, _ = backend
    client.create_table(TableName="other-key", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    sink = make_sink(endpoint, "other-key")
    with pytest.raises(ConfigError, match="SegmentKey"):
        await sink.start()
    await sink.close()


async def test_a_table_without_the_timeline_index_is_a_config_error(backend):
    endpoint, client, _ = backend
    args = results.create_table_args("no-index")
    del args["LocalSecondaryIndexes"]
    args["AttributeDefinitions"] = [a for a in args["AttributeDefinitions"] if a["AttributeName"] != "When"]
    client.create_table(**args)  # the keys are right: it is the table the old layout made
    sink = make_sink(endpoint, "no-index")
    with pytest.raises(ConfigError, match=r"no local secondary index 'Timeline'.*livewatch deploy"):
        await sink.start()
    await sink.close()


async def test_a_deleted_table_or_a_stopped_emulator_is_transient(backend):
    endpoint, client, server = backend
    table = make_table(client)
    sink = make_sink(endpoint, table, max_attempts=1, connect_timeout=1, read_timeout=2)
    await sink.start()
    try:
        client.delete_table(TableName=table)
        with pytest.raises(TransientError, match="gone"):
            await sink.write(detection(1))
        server.stop()
        try:
            with pytest.raises(TransientError, match="DynamoDB write failed"):
                await sink.write(detection(2))
        finally:
            server.start()
        table = make_table(client, table)  # back (empty): the same sink writes again
        await sink.write(detection(3))
    finally:
        await sink.close()
    assert len(scan(client, table)) == 1


def test_throttling_5xx_and_connection_errors_are_transient():
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    from livewatch.aws_clients import is_transient

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "BatchWriteItem")

    assert is_transient(client_error("ProvisionedThroughputExceededException", 400))
    assert is_transient(client_error("ThrottlingException", 400))
    assert is_transient(client_error("InternalServerError", 500))
    assert is_transient(client_error("Whatever", 503))
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert not is_transient(client_error("ValidationException", 400))
    assert not is_transient(client_error("ResourceNotFoundException", 400))


async def test_per_service_endpoint_overrides_the_environment(dynalite, aws_env):
    dynalite.start()  # AWS_ENDPOINT_URL points at moto; endpoint_urls wins for dynamodb
    table = make_table(boto3.client("dynamodb", endpoint_url=dynalite.endpoint_url))
    sink = DynamoDBSink(DynamoDBOptions(table=table, endpoint_urls={"dynamodb": dynalite.endpoint_url}))
    await sink.start()
    try:
        await sink.write(detection())
    finally:
        await sink.close()


async def test_unprocessed_items_are_retried_until_every_item_is_written(aws_env, moto_server):
    """DynamoDB may write part of a batch and return the rest as UnprocessedItems (moto never
    does: a local front in front of it stages the answers, over real HTTP)."""
    from livewatch.testing.front import AwsFront

    client = boto3.client("dynamodb")
    table = make_table(client)
    with AwsFront(moto_server.endpoint_url) as front:
        front.unprocess(calls=3, keep=1)  # three calls in a row write one item each
        sink = make_sink(front.endpoint_url, table, batch_wait_ms=200)
        await sink.start()
        try:
            await asyncio.gather(*(sink.write(detection(n)) for n in range(5)))
        finally:
            await sink.close()
    assert front.batch_sizes == [5, 4, 3, 2]  # each retry sends only what was left
    assert sorted(i["Sequence"]["N"] for i in scan(client, table)) == ["0", "1", "2", "3", "4"]


async def test_items_left_unprocessed_past_the_retries_fail_the_write_transiently(aws_env, moto_server):
    from livewatch.testing.front import AwsFront

    client = boto3.client("dynamodb")
    table = make_table(client)
    with AwsFront(moto_server.endpoint_url) as front:
        front.unprocess(calls=10, keep=0)
        sink = make_sink(front.endpoint_url, table, unprocessed_retries=2)
        await sink.start()
        try:
            with pytest.raises(TransientError, match="unprocessed 3 times"):
                await sink.write(detection(1))
        finally:
            await sink.close()
    assert front.batch_sizes == [1, 1, 1]  # the first call and two retries, then the daemon's turn
    assert scan(client, table) == []
