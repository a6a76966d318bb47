"""The embedded local store: idempotent per segment, queryable by stream and time."""
from datetime import datetime, timedelta, timezone

from livewatch.contract import Detection, Label
from livewatch.sinks.local import LocalSink, LocalStore

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)


def det(stream, seq, label="walk", error=None, start=True):
    return Detection(
        uri=f"/live/{stream}/seg{seq:05d}.ts", stream=stream, sequence=seq,
        start=T0 + timedelta(seconds=10 * seq) if start else None,
        label=None if error else label, probability=None if error else 0.9,
        top_k=[] if error else [Label(label=label, probability=0.9)], error=error,
    )


async def test_redelivery_leaves_one_row_with_the_latest_result(tmp_path):
    sink = LocalSink(LocalSink.Options(path=tmp_path / "d.db"))
    await sink.start()
    await sink.write(det("cam1", 1, "walk"))
    await sink.write(det("cam1", 1, "run"))
    await sink.close()
    store = LocalStore(tmp_path / "d.db")
    rows = store.query()
    assert [(d.uri, d.label) for d in rows] == [("/live/cam1/seg00001.ts", "run")]


def test_query_by_stream_time_and_errors(tmp_path):
    store = LocalStore(tmp_path / "nested" / "d.db")  # parent folders are created
    for seq in range(6):
        store.write(det("cam1", seq))
        store.write(det("cam2", seq, label="run"))
    store.write(det("cam2", 6, error="not a video: no video stream"))

    cam1 = store.query(stream="cam1")
    assert [d.sequence for d in cam1] == [0, 1, 2, 3, 4, 5]  # oldest first
    window = store.query(stream="cam2", since=T0 + timedelta(seconds=20), until=T0 + timedelta(seconds=50))
    assert [d.sequence for d in window] == [2, 3, 4]
    assert [d.sequence for d in store.query(stream="cam2", limit=2)] == [5, 6]  # the newest two
    assert [d.error for d in store.query(errors_only=True)] == ["not a video: no video stream"]
    assert store.streams() == [("cam1", 6, "2026-11-24T12:00:50.000Z"), ("cam2", 7, "2026-11-24T12:01:00.000Z")]
    # the whole detection survives the round trip
    assert cam1[0].top_k == [Label(label="walk", probability=0.9)]
    assert cam1[0].start == T0


def test_detections_without_program_time_sort_by_creation(tmp_path):
    store = LocalStore(tmp_path / "d.db")
    first, second = det("files", 1, start=False), det("files", 2, start=False)
    second.created_at = "2099-01-01T00:00:00.000Z"
    store.write(second)
    store.write(first)
    assert [d.sequence for d in store.query()] == [1, 2]
