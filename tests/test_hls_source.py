"""The built-in `hls` source, driven directly against a real HTTP server on loopback serving a live
stream that the project's own writer encodes in real time (1 s segments, so time is compressed);
nothing is decoded. The daemon end to end is in test_hls_e2e.py."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pydantic
import pytest

from livewatch.errors import ConfigError, SegmentError
from livewatch.metrics import Metrics
from livewatch.sources.hls import HlsOptions, HlsSource, stream_name
from livewatch.sources.hls_follow import Follower
from livewatch.sources.hls_playlist import Variant, parse, pick_variant
from livewatch.testing.hls_server import HlsServer, LiveEncoder, encrypt_stream, end_stream, master_playlist
from livewatch.testing.media import HlsWriter

SMALL = dict(seconds=1.0, size=(160, 90))
KEY = bytes(range(16))


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    with HlsServer(tmp_path / "www") as srv:
        yield srv


class Collector:
    """Runs a source with an emit that records every segment and acknowledges it."""

    def __init__(self, source: HlsSource, ack: bool = True):
        self.source, self.ack, self.segments = source, ack, []
        self.arrived = asyncio.Event()

    async def emit(self, segment) -> None:
        self.segments.append(segment)
        self.arrived.set()
        if self.ack:
            await self.source.ack(segment)

    async def until(self, predicate, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.segments):
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def running(url: str, tmp_path: Path, ack: bool = True, **options):
    source = HlsSource(HlsOptions(url=url, checkpoint=tmp_path / "hls.sqlite", **options), instance="cam")
    await source.start()
    collector = Collector(source, ack)
    task = asyncio.create_task(source.run(collector.emit))
    try:
        yield collector
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()


async def wait_segments(writer: HlsWriter, count: int) -> None:
    async with asyncio.timeout(60):
        while len(writer.segments) < count:
            await asyncio.sleep(0.05)


def real(segments):
    return [s for s in segments if "#missed-" not in s.uri]


# -- playlists ----------------------------------------------------------------------------------

def test_playlist_byte_ranges_keys_and_variants():
    text = "\n".join([
        "#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:7",
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:00Z",
        '#EXT-X-KEY:METHOD=AES-128,URI="k.bin",IV=0x000102030405060708090a0b0c0d0e0f',
        "#EXTINF:2.0,", "#EXT-X-BYTERANGE:100@0", "all.ts",
        "#EXTINF:2.0,", "#EXT-X-BYTERANGE:50", "all.ts",
        "#EXT-X-DISCONTINUITY", '#EXT-X-KEY:METHOD=NONE', "#EXTINF:2.0,", "b/x.ts", "#EXT-X-ENDLIST",
    ])
    playlist = parse(text, "http://h/live/index.m3u8")
    a, b, c = playlist.segments
    assert (a.sequence, a.byterange, b.byterange) == (7, (0, 100), (100, 50))
    assert a.id != b.id and a.uri == b.uri == "http://h/live/all.ts"
    assert a.key.uri == "http://h/live/k.bin" and a.key.iv == bytes(range(16))
    assert c.key is None and c.discontinuity and c.uri == "http://h/live/b/x.ts"
    assert (b.start - a.start).total_seconds() == 2 and playlist.ended
    assert [s.last for s in playlist.segments] == [False, False, True]  # EXT-X-ENDLIST: the last
    assert not any(s.last for s in parse(text.replace("#EXT-X-ENDLIST", ""), "http://h/i.m3u8").segments)
    variants = [Variant("lo", 300_000, (320, 180), "avc1"), Variant("hi", 2_000_000, (1280, 720), "avc1"),
                Variant("audio", 9_000_000, None, "mp4a.40.2")]
    assert [pick_variant(variants, c).uri for c in ("highest", "lowest", "1280x720", "400000")] == \
        ["hi", "lo", "hi", "lo"]
    assert stream_name("https://cdn/live/cam1/index.m3u8") == "cam1"


def media(first: int, count: int, prefix: str = "s") -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for n in range(first, first + count):
        lines += ["#EXTINF:1.0,", f"{prefix}{n}.ts"]
    return "\n".join(lines) + "\n"


def test_follower_takes_new_segments_records_gaps_and_follows_resets():
    follower = Follower({})
    update = follower.update(parse(media(0, 3), "http://h/p.m3u8"))
    assert [s.sequence for s in update.new] == [0, 1, 2] and update.missed is None
    assert follower.update(parse(media(1, 3), "http://h/p.m3u8")).new[0].sequence == 3
    for segment in update.new:  # acknowledged
        follower.taken.discard(segment.id)
        follower.done[segment.id] = segment.sequence
    update = follower.update(parse(media(9, 2), "http://h/p.m3u8"))  # 4..8 went by unseen
    assert (update.missed.first, update.missed.last) == (4, 8)
    assert [s.sequence for s in update.new] == [9, 10]
    assert "http://h/s2.ts" in follower.done and set(update.forget) == {"http://h/s0.ts", "http://h/s1.ts"}
    update = follower.update(parse(media(0, 1, prefix="new"), "http://h/p.m3u8"))  # encoder restart
    assert update.reset and [s.sequence for s in update.new] == [0] and update.missed is None
    # after a restart of ours: the checkpoint's newest row says where we were
    again = Follower({"http://h/s10.ts": 10})
    update = again.update(parse(media(14, 2), "http://h/p.m3u8"))
    assert (update.missed.first, update.missed.last) == (11, 13) and not update.reset


def test_options_are_validated():
    with pytest.raises(pydantic.ValidationError):
        HlsOptions(url="ftp://example.com/x.m3u8")
    with pytest.raises(pydantic.ValidationError):
        HlsOptions(url="http://example.com/x.m3u8", variant="best")
    assert HlsOptions(url="https://example.com/x.m3u8").verify_tls is True


# -- following a live stream --------------------------------------------------------------------

async def test_every_live_segment_once_in_order_with_sequence_and_time(server, tmp_path):
    writer = HlsWriter(server.root / "cam", name="cam", window=3, **SMALL)
    encoder = LiveEncoder(writer, count=6).start()
    await wait_segments(writer, 1)
    async with running(server.url("cam/cam.m3u8"), tmp_path) as got:
        await got.until(lambda s: len(s) >= 6)
        await asyncio.sleep(1.5)  # two more reloads: nothing comes twice
    encoder.stop()
    assert [s.sequence for s in got.segments] == list(range(6))
    assert [s.open().read() for s in got.segments] == [p.read_bytes() for p in writer.segments]
    starts = [s.start for s in got.segments]
    assert starts[0] == writer.start_time.replace(microsecond=writer.start_time.microsecond // 1000 * 1000)
    assert all((b - a).total_seconds() == pytest.approx(1.0) for a, b in zip(starts, starts[1:]))
    assert {s.stream for s in got.segments} == {"cam"}
    # RFC 8216: never reloaded sooner than half the target duration
    assert server.requests.count("/cam/cam.m3u8") <= 2 * 10 + 4


@pytest.mark.slow
async def test_origin_down_20s_loses_nothing_still_listed_and_records_the_missed_range(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "livewatch.sources.hls")
    writer = HlsWriter(server.root / "cam", name="cam", window=4, **SMALL)
    encoder = LiveEncoder(writer).start()
    await wait_segments(writer, 1)
    async with running(server.url("cam/cam.m3u8"), tmp_path, backoff_max=2) as got:
        await got.until(lambda s: len(s) >= 2)
        server.stop()
        await asyncio.sleep(20)  # the outage itself, not a wait for a result
        server.start()
        back = len(writer.segments)
        await got.until(lambda s: any(x.sequence is not None and x.sequence >= back for x in real(s)))
    encoder.stop()
    missed = [s for s in got.segments if "#missed-" in s.uri]
    assert len(missed) == 1, [s.uri for s in got.segments]
    first, last = (int(n) for n in missed[0].uri.rsplit("#missed-", 1)[1].split("-"))
    with pytest.raises(SegmentError, match=f"media sequence {first}..{last}"):
        missed[0].open()
    sequences = [s.sequence for s in real(got.segments)]
    covered = sorted(sequences + list(range(first, last + 1)))
    assert covered == list(range(covered[-1] + 1)), "every sequence exactly once: read or recorded missing"
    assert sequences == sorted(sequences)
    assert "try 1 failed" in caplog.text and "reachable again" in caplog.text
    assert "Traceback" not in caplog.text


async def test_encoder_restart_with_sequence_back_to_zero_is_followed(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "livewatch.sources.hls")
    first = HlsWriter(server.root / "cam", name="cam", **SMALL)
    for _ in range(3):
        first.write_segment()
    async with running(server.url("cam/cam.m3u8"), tmp_path) as got:
        await got.until(lambda s: len(s) >= 3)
        again = HlsWriter(server.root / "cam", name="cam", **SMALL)  # same names, sequence 0
        for _ in range(2):
            again.write_segment()
        await got.until(lambda s: len(s) >= 5)
        await asyncio.sleep(1.5)
    assert [s.sequence for s in got.segments] == [0, 1, 2, 0, 1]
    assert "started over at 0" in caplog.text


async def test_master_playlist_picks_the_variant(server, tmp_path):
    for name, size in (("hi", (320, 180)), ("lo", (160, 90))):
        writer = HlsWriter(server.root / name, name=name, seconds=1.0, size=size)
        writer.write_segment()
        end_stream(writer.playlist)
    master_playlist(server.root / "master.m3u8", [("hi/hi.m3u8", 900_000, "320x180"),
                                                  ("lo/lo.m3u8", 200_000, "160x90")])
    for variant, chosen in (("lowest", "lo"), ("320x180", "hi")):
        async with running(server.url("master.m3u8"), tmp_path, variant=variant, once=True) as got:
            await got.until(lambda s: len(s) >= 1)
        assert got.segments[0].uri == server.url(f"{chosen}/{chosen}00000.ts")


async def test_aes128_and_byte_ranges_give_the_clear_bytes(server, tmp_path):
    writer = HlsWriter(server.root / "clear", name="cam", **SMALL)
    for _ in range(3):
        writer.write_segment()
    encrypt_stream(writer, server.root / "aes", KEY, ended=True)
    # byte ranges: all segments in one file
    blob = b"".join(p.read_bytes() for p in writer.segments)
    (server.root / "ranges").mkdir()
    (server.root / "ranges" / "all.ts").write_bytes(blob)
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for p in writer.segments:
        lines += ["#EXTINF:1.0,", f"#EXT-X-BYTERANGE:{p.stat().st_size}", "all.ts"]
    (server.root / "ranges" / "cam.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n")
    clear = [p.read_bytes() for p in writer.segments]
    for folder in ("aes", "ranges"):
        (tmp_path / folder).mkdir()
        async with running(server.url(f"{folder}/cam.m3u8"), tmp_path / folder, once=True) as got:
            await got.until(lambda s: len(s) >= 3)
        assert [s.open().read() for s in got.segments] == clear, folder
        assert len({s.uri for s in got.segments}) == 3


async def test_a_listed_segment_that_answers_404_is_an_error_saying_it_is_gone(server, tmp_path):
    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    for _ in range(3):
        writer.write_segment()
    writer.segments[1].unlink()
    async with running(server.url("cam/cam.m3u8"), tmp_path) as got:
        await got.until(lambda s: len(s) >= 3)
    assert [s.sequence for s in got.segments] == [0, 1, 2]
    with pytest.raises(SegmentError, match="segment gone: HTTP 404.*playlist listed it"):
        got.segments[1].open()
    assert got.segments[2].open().read() == writer.segments[2].read_bytes()


async def test_restart_resumes_after_the_last_acknowledged_segment(server, tmp_path):
    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    for _ in range(4):
        writer.write_segment()
    url = server.url("cam/cam.m3u8")
    async with running(url, tmp_path, ack=False) as got:
        await got.until(lambda s: len(s) >= 4)
        for segment in got.segments[:2]:  # the daemon finished two, the others were in flight
            await got.source.ack(segment)
    writer.write_segment()
    async with running(url, tmp_path) as again:
        await again.until(lambda s: len(s) >= 3)
        await asyncio.sleep(1.5)
    assert [s.sequence for s in again.segments] == [2, 3, 4]


async def test_a_stalled_playlist_is_logged_and_exported(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "livewatch.sources.hls")
    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    writer.write_segment()
    metrics = Metrics()
    source = HlsSource(HlsOptions(url=server.url("cam/cam.m3u8"), checkpoint=tmp_path / "c.sqlite"), instance="cam")
    source.metrics = metrics
    await source.start()
    task = asyncio.create_task(source.run(lambda segment: source.ack(segment)))
    try:
        async with asyncio.timeout(20):
            while metrics.source_stalled.labels("cam", "cam")._value.get() != 1:
                await asyncio.sleep(0.1)
        assert "stalled: the playlist has not changed" in caplog.text
        writer.write_segment()
        async with asyncio.timeout(20):
            while metrics.source_stalled.labels("cam", "cam")._value.get() != 0:
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()


# -- bad URLs -----------------------------------------------------------------------------------

async def test_bad_streams_fail_at_start_naming_the_source(server, tmp_path):
    (server.root / "page.m3u8").write_text("<html>not a playlist</html>")
    (server.root / "audio.m3u8").write_text(
        '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\naudio/a.m3u8\n')
    for path, message in (("page.m3u8", "not an HLS playlist"), ("audio.m3u8", "no video")):
        source = HlsSource(HlsOptions(url=server.url(path), checkpoint=tmp_path / "c.sqlite"), instance="tv")
        with pytest.raises(ConfigError, match=f"hls source 'tv': .*{message}"):
            await source.start()
        await source.close()


async def test_refused_connection_is_retried_and_logged_without_traceback(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, "livewatch.sources.hls")
    server.stop()  # nothing listens on the port now
    source = HlsSource(HlsOptions(url=server.url("cam/cam.m3u8"), checkpoint=tmp_path / "c.sqlite",
                                  backoff_max=0.5), instance="tv")
    await source.start()  # an origin that is down is not a config error: it may come back
    got = []

    async def emit(segment):
        got.append(segment)

    task = asyncio.create_task(source.run(emit))
    try:
        async with asyncio.timeout(20):
            while "try 3 failed" not in caplog.text:
                await asyncio.sleep(0.1)
        writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
        writer.write_segment()
        server.start()
        async with asyncio.timeout(20):
            while not got:
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
    assert "not reachable yet" in caplog.text and "Traceback" not in caplog.text
    assert got[0].sequence == 0


async def test_endlist_ends_the_stream_and_once_the_run(server, tmp_path):
    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    for _ in range(2):
        writer.write_segment()
    end_stream(writer.playlist)
    (tmp_path / "a").mkdir()
    async with running(server.url("cam/cam.m3u8"), tmp_path / "a") as got:
        await got.until(lambda s: len(s) >= 2)
        reloads = server.requests.count("/cam/cam.m3u8")
        async with asyncio.timeout(10):  # still watching for a new stream, at the RFC's pace
            while server.requests.count("/cam/cam.m3u8") < reloads + 2:
                await asyncio.sleep(0.1)
    (tmp_path / "b").mkdir()
    source = HlsSource(HlsOptions(url=server.url("cam/cam.m3u8"), checkpoint=tmp_path / "b" / "c.sqlite",
                                  once=True), instance="cam")
    await source.start()
    emitted = []

    async def emit(segment):
        emitted.append(segment)

    try:
        await asyncio.wait_for(source.run(emit), 10)  # returns by itself
    finally:
        await source.close()
    assert [s.sequence for s in emitted] == [0, 1]


async def test_an_ended_playlist_marks_exactly_its_last_segment(server, tmp_path):
    """A VOD-style playlist (EXT-X-ENDLIST from the start): its last segment is the stream's last."""
    writer = HlsWriter(server.root / "vod", name="vod", **SMALL)
    for _ in range(3):
        writer.write_segment()
    end_stream(writer.playlist)
    async with running(server.url("vod/vod.m3u8"), tmp_path, once=True) as got:
        await got.until(lambda s: len(s) >= 3)
    assert [(s.sequence, s.last) for s in got.segments] == [(0, False), (1, False), (2, True)]


async def test_endlist_after_the_last_segment_emits_it_again_marked_last(server, tmp_path):
    """An encoder that appends EXT-X-ENDLIST in a write of its own, after the source took the
    last segment: that segment comes again, marked, once; a restart does not repeat it."""
    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    writer.write_segment()
    async with running(server.url("cam/cam.m3u8"), tmp_path) as got:
        await got.until(lambda s: len(s) >= 1)
        writer.write_segment()
        await got.until(lambda s: len(s) >= 2)
        end_stream(writer.playlist)
        await got.until(lambda s: len(s) >= 3)
        reloads = server.requests.count("/cam/cam.m3u8")
        async with asyncio.timeout(10):  # it keeps watching: nothing more
            while server.requests.count("/cam/cam.m3u8") < reloads + 2:
                await asyncio.sleep(0.1)
    assert [(s.sequence, s.last) for s in got.segments] == [(0, False), (1, False), (1, True)]
    assert got.segments[2].uri == got.segments[1].uri  # the same segment: its detection is replaced
    async with running(server.url("cam/cam.m3u8"), tmp_path) as again:  # the same checkpoint
        reloads = server.requests.count("/cam/cam.m3u8")
        async with asyncio.timeout(10):
            while server.requests.count("/cam/cam.m3u8") < reloads + 2:
                await asyncio.sleep(0.1)
    assert again.segments == []


async def test_a_segment_over_the_size_limit_is_an_error_and_not_read(server, tmp_path):
    from livewatch.settings import DaemonSettings

    writer = HlsWriter(server.root / "cam", name="cam", **SMALL)
    writer.write_segment()
    source = HlsSource(HlsOptions(url=server.url("cam/cam.m3u8"), checkpoint=tmp_path / "c.sqlite",
                                  once=True), instance="cam")
    source.daemon_settings = DaemonSettings(max_segment_mb=0.01)  # 10 kB; the segment is ~30 kB
    await source.start()
    emitted = []

    async def emit(segment):
        emitted.append(segment)

    try:
        await asyncio.wait_for(source.run(emit), 10)
    finally:
        await source.close()
    with pytest.raises(SegmentError, match="segment too large: more than 0.01 MB"):
        emitted[0].open()
