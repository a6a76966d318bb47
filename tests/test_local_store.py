"""The embedded local store: idempotent per segment, queryable by stream and time."""
from datetime import datetime, timedelta, timezone

from livewatch.contract import Detection, Label, WindowResult
from livewatch.output import format_window
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


def windowed(stream, seq, labels, start=True, seconds=2.5):
    d = det(stream, seq, start=start)
    d.windows = [WindowResult(start=k * seconds, end=(k + 1) * seconds, frames=[k * 64, k * 64 + 62],
                              label=label, probability=0.5 + k / 10,
                              top_k=[Label(label=label, probability=0.5 + k / 10)])
                 for k, label in enumerate(labels)]
    return d


def test_windows_are_a_timeline_queryable_by_stream_and_absolute_time(tmp_path):
    store = LocalStore(tmp_path / "d.db")
    for seq in range(3):
        store.write(windowed("cam1", seq, ["walk", "walk", "run", "run"]))
    store.write(windowed("cam2", 0, ["sit"]))
    store.write(windowed("cam1", 1, ["jump", "jump", "jump", "jump"]))  # redelivered: replaced

    cam1 = store.windows(stream="cam1")
    assert len(cam1) == 12
    assert [w["start"] for w in cam1[:5]] == [  # segment 0 at T0, segment 1 at T0 + 10 s
        "2026-11-24T12:00:00.000Z", "2026-11-24T12:00:02.500Z", "2026-11-24T12:00:05.000Z",
        "2026-11-24T12:00:07.500Z", "2026-11-24T12:00:10.000Z"]
    assert cam1[3]["end"] == "2026-11-24T12:00:10.000Z"
    assert [w["label"] for w in cam1[4:8]] == ["jump"] * 4
    between = store.windows(stream="cam1", since=T0 + timedelta(seconds=5), until=T0 + timedelta(seconds=12))
    assert [(w["sequence"], w["n"], w["label"]) for w in between] == [
        (0, 2, "run"), (0, 3, "run"), (1, 0, "jump")]
    assert [w["n"] for w in store.windows(stream="cam1", limit=2)] == [2, 3]  # the newest two
    assert [w["label"] for w in store.windows(stream="cam2")] == ["sit"]
    assert cam1[0]["offset_start"] == 0.0 and (cam1[1]["first_frame"], cam1[1]["last_frame"]) == (64, 126)
    assert format_window(cam1[1]) == ("2026-11-24T12:00:02.500Z - 12:00:05.000Z  cam1 #0  walk  0.60  "
                                      "(frames 64-126)  /live/cam1/seg00000.ts")


def test_windows_without_program_time_keep_their_offsets(tmp_path):
    store = LocalStore(tmp_path / "d.db")
    d = windowed("files", 1, ["walk", "run"], start=False)
    store.write(d)
    rows = store.windows()
    assert [(w["start"], w["end"], w["at"]) for w in rows] == [(None, None, d.created_at)] * 2
    assert [(w["offset_start"], w["offset_end"]) for w in rows] == [(0.0, 2.5), (2.5, 5.0)]
    assert format_window(rows[1]).startswith(f"{d.created_at} +2.5-5.0 s  files #1  run  0.60")
