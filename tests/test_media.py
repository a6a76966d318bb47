"""The generated test media look like what a live encoder writes."""

from datetime import datetime, timedelta, timezone
from fractions import Fraction

import av
import m3u8
import pytest

from livewatch.testing.media import HlsWriter, write_video


def _packets(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [p for p in container.demux(stream) if p.size], stream.time_base


def test_hls_stream_is_one_continuous_encode(hls_stream):
    for n in range(3):
        packets, time_base = _packets(hls_stream / f"stream{n:05d}.ts")
        assert len(packets) == 250
        assert float(packets[0].pts * time_base) == pytest.approx(10 * n + 1.4)
        assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 50, 100, 150, 200]


def test_playlist_is_a_live_playlist(hls_stream):
    playlist = m3u8.load(str(hls_stream / "stream.m3u8"))
    assert playlist.target_duration == 10
    assert playlist.media_sequence == 0
    assert not playlist.is_endlist
    assert [s.uri for s in playlist.segments] == ["stream00000.ts", "stream00001.ts", "stream00002.ts"]
    assert [s.duration for s in playlist.segments] == [10.0] * 3
    starts = [s.current_program_date_time for s in playlist.segments]
    assert [b - a for a, b in zip(starts, starts[1:])] == [timedelta(seconds=10)] * 2
    assert sorted(p.name for p in hls_stream.iterdir()) == [
        "stream.m3u8", "stream00000.ts", "stream00001.ts", "stream00002.ts"
    ]


def test_writer_plays_live_with_a_sliding_window(tmp_path):
    start = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    writer = HlsWriter(tmp_path, seconds=1.0, fps=Fraction(30000, 1001), start_time=start, window=2)
    listed = []
    for _ in range(3):
        writer.write_segment()
        playlist = m3u8.load(str(writer.playlist))
        listed.append((playlist.media_sequence, [s.uri for s in playlist.segments]))
    assert listed == [
        (0, ["stream00000.ts"]),
        (0, ["stream00000.ts", "stream00001.ts"]),
        (1, ["stream00001.ts", "stream00002.ts"]),
    ]
    assert playlist.segments[0].current_program_date_time == start + timedelta(seconds=1.001)
    frames = [len(_packets(path)[0]) for path in writer.segments]
    assert frames == [30, 30, 30]  # round(n * 29.97) frame boundaries


@pytest.mark.parametrize(
    ("name", "seconds", "fps", "frames", "gop"),
    [
        ("clip.mp4", 5, 25, 125, 50),
        ("clip.ts", 0.5, 25, 12, 50),
        ("ntsc.mp4", 5, Fraction(30000, 1001), 150, 60),
    ],
)
def test_write_video(tmp_path, name, seconds, fps, frames, gop):
    path = write_video(tmp_path / name, seconds=seconds, fps=fps)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray() for f in container.decode(video=0)]
        assert container.streams.video[0].average_rate == fps
    assert len(decoded) == frames
    assert all((a != b).any() for a, b in zip(decoded, decoded[1:]))  # the picture moves
    packets, _ = _packets(path)
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == list(range(0, frames, gop))
    assert [p.pts for p in packets] == sorted(p.pts for p in packets)  # no B-frames


def test_write_video_with_b_frames(tmp_path):
    packets, _ = _packets(write_video(tmp_path / "b.mp4", seconds=1, bframes=2))
    assert [p.pts for p in packets] != sorted(p.pts for p in packets)


def test_write_video_wants_a_known_container(tmp_path):
    with pytest.raises(ValueError, match="use a .ts or .mp4 name"):
        write_video(tmp_path / "clip.mkv", seconds=1)
