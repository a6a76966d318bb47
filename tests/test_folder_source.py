"""The built-in `folder` source, driven directly: an encoder is simulated by writing segment files
and then (atomically, temp file + rename) the playlist; nothing is decoded."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pluggy
import pydantic
import pytest

from livewatch import hookspecs
from livewatch.errors import ConfigError
from livewatch.plugins import Registry
from livewatch.sources import folder as folder_plugin
from livewatch.sources.checkpoint import Checkpoint
from livewatch.sources.folder import CHECKPOINT_NAME, FolderOptions, FolderSource
from livewatch.sources.playlist import Entry, read_playlists
from livewatch.sources.scan import scan_folder

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
FAST = dict(settle_seconds=0.3, poll_interval=0.05)


def write_segment(folder: Path, name: str, data: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data if data is not None else name.encode() * 10)
    return path


def write_playlist(folder: Path, names: list[str], first_sequence: int = 0, name: str = "index.m3u8",
                   ended: bool = False) -> None:
    """As an encoder does: the whole playlist to a temp file, then renamed over the old one
    (`ended`: with EXT-X-ENDLIST, as when the recording is finished)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}"]
    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{(T0 + timedelta(seconds=2 * first_sequence)).isoformat()}")
    for segment in names:
        lines += ["#EXTINF:2.000,", segment]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    tmp = folder / f"{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, folder / name)


def make_stream(folder: Path, count: int, first_sequence: int = 0) -> list[str]:
    names = [f"seg{first_sequence + i}.ts" for i in range(count)]
    for n in names:
        write_segment(folder, n)
    write_playlist(folder, names, first_sequence)
    return names


@contextlib.asynccontextmanager
async def started(root: Path, **options):
    source = FolderSource(FolderOptions(path=root, **options), instance="cams")
    await source.start()
    try:
        yield source
    finally:
        await source.close()


async def run_once(root: Path, **options) -> list:
    async with started(root, once=True, **options) as source:
        return await collect(source)


async def collect(source: FolderSource) -> list:
    got = []

    async def emit(segment):
        got.append(segment)

    await asyncio.wait_for(source.run(emit), timeout=10)
    return got


@contextlib.asynccontextmanager
async def running(source: FolderSource, emit=None):
    """Run a watching source in a task; yields the list it emits into; cancels it on exit."""
    got: list = []

    async def append(segment):
        got.append(segment)

    task = asyncio.create_task(source.run(emit or append))
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def names(segments) -> list[str]:
    return [os.path.basename(s.uri) for s in segments]


def test_registers_through_the_hook_like_a_third_party_plugin():
    pm = pluggy.PluginManager("livewatch")
    pm.add_hookspecs(hookspecs)
    pm.register(folder_plugin, name="livewatch.sources.folder")
    assert Registry(pm).get("source", "folder").cls is FolderSource


def test_options_are_validated():
    with pytest.raises(pydantic.ValidationError, match="path"):
        FolderOptions()
    with pytest.raises(pydantic.ValidationError, match="live"):
        FolderOptions(path=".", files=["a.ts"], start_at="live")
    with pytest.raises(pydantic.ValidationError, match="patern"):
        FolderOptions(path=".", patern="*.ts")


async def test_start_names_a_missing_folder_or_file(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        await FolderSource(FolderOptions(path=tmp_path / "nope")).start()
    with pytest.raises(ConfigError, match="no such file"):
        await FolderSource(FolderOptions(path=tmp_path, files=["nope.ts"])).start()


async def test_playlist_gives_order_and_fields_per_subfolder_stream(tmp_path):
    # seg9 and seg10 in one playlist: order by media sequence, not by file name
    cam1 = make_stream(tmp_path / "cam1", 3, first_sequence=8)
    cam2 = make_stream(tmp_path / "cam2", 2, first_sequence=100)
    before = time.time()
    # nothing here needs settling, so a long settle_seconds must not delay the one pass
    got = await run_once(tmp_path, settle_seconds=60, poll_interval=0.05)

    by_stream = {s: [g for g in got if g.stream == s] for s in ("cam1", "cam2")}
    assert len(got) == 5
    assert names(by_stream["cam1"]) == cam1 == ["seg8.ts", "seg9.ts", "seg10.ts"]
    assert names(by_stream["cam2"]) == cam2
    first = by_stream["cam1"][0]
    assert first.uri == str(tmp_path / "cam1" / "seg8.ts")
    assert [s.sequence for s in by_stream["cam1"]] == [8, 9, 10]
    assert [s.start for s in by_stream["cam1"]] == [T0 + timedelta(seconds=s) for s in (16, 18, 20)]
    assert first.start.tzinfo is not None
    assert first.duration == 2.0
    assert first.source == "cams"
    assert first.size == len(b"seg8.ts" * 10)
    with first.open() as f:
        assert f.read() == b"seg8.ts" * 10
    assert before <= first.arrived_at <= time.time()
    assert by_stream["cam2"][0].sequence == 100


def test_playlist_parsing(tmp_path):
    (tmp_path / "master.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\ncam1/index.m3u8\n")
    assert read_playlists(str(tmp_path), [str(tmp_path / "master.m3u8")]) is None
    (tmp_path / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:00\n"
        "#EXTINF:2.5,\na%20b.ts\n#EXTINF:2,\nother/c.ts\n#EXTINF:2,\n../d.ts\n#EXTINF:2,\n"
    )  # a cut-off last entry, as a playlist rewritten in place can be caught
    entries = read_playlists(str(tmp_path), [str(tmp_path / "index.m3u8")])
    assert entries == {"a b.ts": Entry(5, T0, 2.5)}  # no time zone: UTC; other folders: not ours


async def test_file_without_playlist_is_emitted_once_it_stops_growing(tmp_path):
    """Each emission comes settle_seconds or more after the last write before it, with the size
    the file had then: checked against a log of the writes, so a stalled test loop cannot make it
    pass or fail by luck."""
    settle = 1.0
    writes: list[tuple[float, int]] = []  # (monotonic time after the write, file size)
    emitted: list[tuple[float, object]] = []

    async def emit(segment):
        emitted.append((time.monotonic(), segment))

    async with started(tmp_path, settle_seconds=settle, poll_interval=0.05) as source, \
            running(source, emit=emit):
        path = write_segment(tmp_path, "clip.ts", b"part one")
        writes.append((time.monotonic(), path.stat().st_size))
        for chunk in (b" and", b" part", b" two"):  # the encoder keeps writing for a while
            await until(lambda: time.monotonic() >= writes[-1][0] + settle / 4)
            if emitted:
                break
            with path.open("ab") as f:
                f.write(chunk)
            writes.append((time.monotonic(), path.stat().st_size))
        await until(lambda: emitted)
    at, segment = emitted[0]
    last_time, last_size = max(w for w in writes if w[0] <= at)
    assert at - last_time >= settle  # settled: no write for settle_seconds
    assert segment.size == last_size  # all that was written by then
    if len(writes) == 4:  # the usual case: the source saw it grow and waited for the last write
        assert segment.size == len(b"part one and part two")
    assert segment.stream == tmp_path.name  # segments in the root: the stream is named after it
    assert segment.sequence is None and segment.start is None and segment.duration is None


async def test_with_a_playlist_an_unlisted_file_waits_until_listed(tmp_path):
    cam = tmp_path / "cam1"
    make_stream(cam, 1)
    async with started(tmp_path, settle_seconds=0.05, poll_interval=0.05) as source, running(source) as got:
        await until(lambda: len(got) == 1)
        write_segment(cam, "seg1.ts")
        await asyncio.sleep(0.5)  # ten times settle_seconds: only the playlist may make it complete
        assert names(got) == ["seg0.ts"]
        write_playlist(cam, ["seg0.ts", "seg1.ts"])
        await until(lambda: len(got) == 2)
    assert got[1].sequence == 1


async def test_files_older_than_the_playlist_window_come_first(tmp_path):
    cam = tmp_path / "cam1"
    for age, name in ((30, "old0.ts"), (20, "old1.ts")):  # written before the playlist's window
        os.utime(write_segment(cam, name), (time.time() - age,) * 2)
    make_stream(cam, 2, first_sequence=2)
    got = await run_once(tmp_path, settle_seconds=0.1, poll_interval=0.05)
    assert names(got) == ["old0.ts", "old1.ts", "seg2.ts", "seg3.ts"]
    assert [s.sequence for s in got] == [None, None, 2, 3]


async def test_restart_emits_exactly_the_unacknowledged_segments(tmp_path):
    cam = tmp_path / "cam1"
    make_stream(cam, 5)
    async with started(tmp_path, once=True, **FAST) as first:
        got = await collect(first)
        for i in (3, 1, 4):  # workers finish in any order
            await first.ack(got[i])
    assert (tmp_path / CHECKPOINT_NAME).exists()

    assert names(await run_once(tmp_path, **FAST)) == ["seg0.ts", "seg2.ts"]

    async with started(tmp_path, once=True, **FAST) as third:
        for segment in await collect(third):
            await third.ack(segment)
    assert await run_once(tmp_path, **FAST) == []


async def test_checkpoint_forgets_deleted_files_and_notices_rewritten_ones(tmp_path):
    cam = tmp_path / "cam1"
    make_stream(cam, 3)
    async with started(tmp_path, once=True, **FAST) as source:
        for segment in await collect(source):
            await source.ack(segment)
    (cam / "seg0.ts").unlink()
    rewritten = cam / "seg1.ts"
    os.utime(rewritten, ns=(rewritten.stat().st_mtime_ns + 10**9,) * 2)  # a new file, same name

    assert names(await run_once(tmp_path, **FAST)) == ["seg1.ts"]
    with contextlib.closing(sqlite3.connect(tmp_path / CHECKPOINT_NAME)) as db:
        assert sorted(r[0] for r in db.execute("SELECT name FROM done")) == ["seg1.ts", "seg2.ts"]


def test_checkpoint_survives_a_process_killed_mid_write(tmp_path):
    path = tmp_path / "checkpoint.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys\nfrom livewatch.sources.checkpoint import Checkpoint\n"
            f"c = Checkpoint({str(path)!r})\n"
            "for i in range(10**6):\n    c.add('cam1', f'seg{i}.ts', i)\n    print(i, flush=True)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    for _ in range(200):  # acknowledged: the add returned
        last_acked = int(writer.stdout.readline())
    writer.kill()
    writer.wait()
    writer.stdout.close()
    done = Checkpoint(str(path))
    try:
        rows = done.load()["cam1"]
        assert set(range(last_acked + 1)) <= set(rows.values())
        assert len(rows) <= last_acked + 2  # at most the one write in flight
    finally:
        done.close()


async def test_acknowledged_segments_stay_done_and_released_ones_come_again(tmp_path):
    make_stream(tmp_path / "cam1", 2)
    async with started(tmp_path, **FAST) as source, running(source) as got:
        await until(lambda: len(got) == 2)
        await source.ack(got[0])
        await source.release(got[1])
        await until(lambda: len(got) == 3)
        await asyncio.sleep(0.3)  # several rescans
    assert names(got) == ["seg0.ts", "seg1.ts", "seg1.ts"]


async def test_file_events_wake_streams_long_before_the_rescan(tmp_path):
    cam1 = tmp_path / "cam1"
    make_stream(cam1, 1)
    async with started(tmp_path, settle_seconds=0.05, poll_interval=60) as source, running(source) as got:
        await until(lambda: len(got) == 1)
        write_segment(cam1, "seg1.ts")
        write_playlist(cam1, ["seg0.ts", "seg1.ts"])
        await until(lambda: len(got) == 2, timeout=5)
        make_stream(tmp_path / "cam2", 1)  # a new stream folder
        await until(lambda: len(got) == 3, timeout=5)
    assert [(s.stream, s.sequence) for s in got] == [("cam1", 0), ("cam1", 1), ("cam2", 0)]


async def test_start_at_live_skips_what_was_already_there(tmp_path):
    cam1, cam2 = tmp_path / "cam1", tmp_path / "cam2"
    make_stream(cam1, 2)
    write_segment(tmp_path, "old.ts")  # no playlist in the root: complete once settled
    os.utime(tmp_path / "old.ts", (time.time() - 60,) * 2)
    write_segment(cam1, "seg2.ts", b"first half")  # being written when the source starts
    async with started(tmp_path, start_at="live", **FAST) as source:  # "from now on" counts from here
        with (cam1 / "seg2.ts").open("ab") as f:
            f.write(b", second half")
        write_playlist(cam1, ["seg0.ts", "seg1.ts", "seg2.ts"])
        make_stream(cam2, 1)  # a stream that starts after us: all of it is new
        async with running(source) as got:
            await until(lambda: len(got) == 2)
            await asyncio.sleep(FAST["settle_seconds"] * 2)  # old.ts had time to settle
    assert sorted((s.stream, names([s])[0]) for s in got) == [("cam1", "seg2.ts"), ("cam2", "seg0.ts")]


async def test_a_finished_playlist_marks_exactly_its_last_segment(tmp_path):
    done = make_stream(tmp_path / "done", 3)
    write_playlist(tmp_path / "done", done, ended=True)
    make_stream(tmp_path / "live", 2)  # no EXT-X-ENDLIST: nothing is the last
    got = await run_once(tmp_path, **FAST)
    assert [(s.stream, s.sequence, s.last) for s in got if s.stream == "done"] == [
        ("done", 0, False), ("done", 1, False), ("done", 2, True)]
    assert [s.last for s in got if s.stream == "live"] == [False, False]
    async with started(tmp_path, files=["done/seg2.ts", "done/seg1.ts"], checkpoint=tmp_path / "c") as source:
        assert [s.last for s in await collect(source)] == [True, False]  # `files` too


async def test_files_are_emitted_in_the_order_given_then_run_returns(tmp_path):
    cam = tmp_path / "cam1"
    make_stream(cam, 3)
    async with started(tmp_path, files=["cam1/seg2.ts", str(cam / "seg0.ts")]) as source:
        got = await collect(source)
        await source.ack(got[0])
    assert names(got) == ["seg2.ts", "seg0.ts"]
    assert [s.sequence for s in got] == [2, 0]
    assert got[0].stream == "cam1"
    async with started(tmp_path, files=["cam1/seg2.ts", "cam1/seg0.ts"]) as source:
        assert names(await collect(source)) == ["seg0.ts"]  # the acknowledged one is done
    # the checkpoint is shared with watching
    assert names(await run_once(tmp_path, **FAST)) == ["seg0.ts", "seg1.ts"]


async def test_emit_waiting_holds_the_source_back(tmp_path):
    make_stream(tmp_path / "cam1", 4)
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    async with started(tmp_path, **FAST) as source, running(source, emit=queue.put):
        await until(queue.full)  # the source is now blocked in emit with the next segment
        got = [await asyncio.wait_for(queue.get(), 2) for _ in range(4)]
    assert names(got) == ["seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts"]


async def test_cancelling_run_leaves_no_task_behind(tmp_path):
    make_stream(tmp_path / "cam1", 1)
    tasks_before = asyncio.all_tasks()
    async with started(tmp_path, **FAST) as source:
        async with running(source) as got:
            await until(lambda: got)
            assert len(asyncio.all_tasks()) > len(tasks_before)
    assert asyncio.all_tasks() == tasks_before


async def test_vanishing_files_and_folders_do_not_crash_the_scan(tmp_path):
    cam = tmp_path / "cam1"
    make_stream(cam, 2)
    (cam / "seg0.ts").unlink()  # listed in the playlist, deleted by the encoder
    # listed by the directory scan, gone by the time it is stat'ed
    (cam / "gone.ts").symlink_to(cam / "never-there.ts")
    assert set(scan_folder(str(cam), "*.ts").files) == {"seg1.ts"}

    async with started(tmp_path, **FAST) as source, running(source) as got:
        await until(lambda: got)
        for path in cam.iterdir():
            path.unlink()
        cam.rmdir()  # the whole stream folder goes
        make_stream(tmp_path / "cam2", 1)
        await until(lambda: len(got) == 2)
    assert [(s.stream, names([s])[0]) for s in got] == [("cam1", "seg1.ts"), ("cam2", "seg0.ts")]
