"""decode_clip / decode_segment: the frames they pick, how damage is concealed and reported, and
how they refuse what is not video."""

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import Interpolation

from livewatch.errors import SegmentError
from livewatch.model.sampling import window_indices
from livewatch.model.video import decode_clip, decode_segment
from livewatch.model.windows import assemble
from livewatch.testing.media import write_video


def full_decode(path: Path) -> list[np.ndarray]:
    """Every frame in output order, scaled by the same swscale call decode_clip makes."""
    with av.open(str(path)) as container:
        return [
            f.to_ndarray(width=340, height=256, format="rgb24", interpolation=Interpolation.BILINEAR)
            for f in container.decode(video=0)
        ]


def remux_from(src: Path, dst: Path, first_packet: int) -> Path:
    """Copy `src` without its first packets, so that it starts mid-GOP."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        packets = [p for p in inp.demux(inp.streams.video[0]) if p.size]
        for packet in packets[first_packet:]:
            packet.stream = stream
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("video")
    return {
        "bframes.mp4": write_video(folder / "bframes.mp4", seconds=4, bframes=2),
        "bframes.ts": write_video(folder / "bframes.ts", seconds=4, bframes=2),
        "ntsc.ts": write_video(folder / "ntsc.ts", seconds=6, fps=Fraction(30000, 1001)),
        "short.ts": write_video(folder / "short.ts", seconds=0.5),
    }


def test_hls_segment(hls_stream):
    """The 2nd segment of a stream: timestamps start at 11.4 s, not 0."""
    clip = decode_clip(hls_stream / "stream00001.ts")
    assert clip.num_frames == 250
    assert clip.indices == list(range(109, 141))
    assert (clip.fps, clip.width, clip.height) == (25.0, 640, 360)
    assert clip.frames.shape == (32, 256, 340, 3) and clip.frames.dtype == np.uint8
    assert clip.decode_ms > 0


@pytest.mark.parametrize("name", ["bframes.mp4", "bframes.ts", "ntsc.ts", "short.ts"])
def test_frames_are_the_full_decodes_frames(media, name):
    """Decoding from a keyframe gives bit-identical frames at the right places, B-frames or not."""
    clip = decode_clip(media[name])
    reference = full_decode(media[name])
    assert clip.num_frames == len(reference)
    assert clip.indices == window_indices(len(reference))
    np.testing.assert_array_equal(clip.frames, np.stack([reference[i] for i in clip.indices]))


def test_segment_starting_mid_gop_counts_from_its_first_keyframe(hls_stream, tmp_path):
    """FFmpeg outputs nothing before the first keyframe, so frame 0 is that keyframe."""
    segment = remux_from(hls_stream / "stream00001.ts", tmp_path / "mid-gop.ts", first_packet=25)
    clip = decode_clip(segment)
    reference = full_decode(segment)
    assert clip.num_frames == len(reference) == 200
    np.testing.assert_array_equal(clip.frames, np.stack([reference[i] for i in clip.indices]))


def test_reads_a_file_object(hls_stream):
    path = hls_stream / "stream00001.ts"
    from_bytes = decode_clip(io.BytesIO(path.read_bytes()))
    np.testing.assert_array_equal(from_bytes.frames, decode_clip(path).frames)


def test_29_97_fps(media):
    assert decode_clip(media["ntsc.ts"]).fps == pytest.approx(29.97, abs=0.001)


def test_truncated_segment_is_classified_on_what_it_holds(hls_stream, tmp_path):
    """Cut mid-file (and mid TS packet): the window is the middle of the frames still there."""
    data = (hls_stream / "stream00001.ts").read_bytes()
    segment = tmp_path / "truncated.ts"
    segment.write_bytes(data[: len(data) // 2 + 77])
    clip = decode_clip(segment)
    reference = full_decode(segment)
    assert 100 < clip.num_frames == len(reference) < 250
    np.testing.assert_array_equal(clip.frames, np.stack([reference[i] for i in clip.indices]))


def test_a_truncated_segment_says_so(hls_stream, tmp_path):
    """Frames decoded against the duration the playlist states; a whole segment is not truncated."""
    path = hls_stream / "stream00001.ts"
    whole = decode_segment(path, stated_seconds=10.0)
    assert (whole.num_frames, whole.expected_frames, whole.truncated, whole.notes) == (250, 250, False, [])
    data = path.read_bytes()
    cut = _write(tmp_path / "cut.ts", data[: len(data) // 2])
    decoded = decode_segment(cut, stated_seconds=10.0)
    assert decoded.truncated and decoded.expected_frames == 250 and decoded.num_frames < 150
    assert decoded.notes == [f"truncated: {decoded.num_frames} of the 250 frames its stated "
                             f"duration holds decoded; classified on what it holds"]
    without_playlist = decode_segment(cut)  # MPEG-TS states no duration of its own but its span
    assert not without_playlist.truncated


def _frames(ids) -> dict[int, np.ndarray]:
    return {i: np.full((2, 2, 3), i, np.uint8) for i in ids}


def test_missing_frames_are_concealed_with_the_nearest_decoded_frame_of_their_window():
    plan = [list(range(0, 8)), list(range(8, 16))]
    got = _frames(set(range(16)) - {3, 4, 8})  # 2 of 8 and 1 of 8 missing: 25 % at most
    decoded = assemble(plan, got, [i / 25 for i in range(16)], new_step=1, fps=25,
                       stated_seconds=None, width=2, height=2, decode_ms=0)
    assert [w.concealed for w in decoded.windows] == [2, 1]
    assert decoded.concealed_frames == 3
    # 3 -> 2 (a tie with 5 goes to the earlier frame), 4 -> 5, 8 -> 9 (not 7: another window)
    assert decoded.frames[0, :, 0, 0, 0].tolist() == [0, 1, 2, 2, 5, 5, 6, 7]
    assert decoded.frames[1, :, 0, 0, 0].tolist() == [9, 9, 10, 11, 12, 13, 14, 15]
    assert decoded.notes == ["3 frame(s) did not decode and were concealed with the nearest "
                             "decoded frame of their window"]
    assert [(w.start, w.end) for w in decoded.windows] == [(0.0, 0.32), (0.32, 0.64)]


def test_a_window_missing_more_than_a_quarter_is_refused_and_says_how_much():
    plan = [list(range(0, 8)), list(range(8, 16))]
    times = [i / 25 for i in range(16)]
    got = _frames(set(range(16)) - {1, 2, 3})
    decoded = assemble(plan, got, times, new_step=1, fps=25, stated_seconds=None, width=2,
                       height=2, decode_ms=0)
    assert [w.indices[0] for w in decoded.windows] == [8]
    assert decoded.notes == ["window refused: frames 0-7: 3 of its 8 frames (38 %) did not "
                             "decode; a window may lack at most 25 %"]
    with pytest.raises(SegmentError, match=r"^could not decode: frames 0-7: 3 of its 8 frames "
                                           r"\(38 %\) did not decode; a window may lack at most 25 %$"):
        assemble(plan[:1], got, times, new_step=1, fps=25, stated_seconds=None, width=2, height=2,
                 decode_ms=0)


def test_three_frames_are_enough(video_factory):
    clip = decode_clip(video_factory("three.ts", seconds=3 / 25))
    assert clip.indices == [0] + [1] * 31


def _write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mp2", rate=48000)
        for i in range(20):
            samples = np.zeros((1, 2 * 1152), np.int16)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * 1152
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _refusal(src) -> str:
    with pytest.raises(SegmentError) as error:
        decode_clip(src)
    return str(error.value)


def test_empty_segment(tmp_path):
    assert _refusal(_write(tmp_path / "empty.ts", b"")) == "segment is empty (0 bytes)"
    assert _refusal(io.BytesIO(b"")) == "segment is empty (0 bytes)"


def test_random_bytes(tmp_path):
    noise = _write(tmp_path / "noise.ts", np.random.default_rng(0).bytes(100_000))
    assert _refusal(noise) == (
        "not a video: FFmpeg cannot read it as a media file (Invalid data found when processing input)"
    )


def test_audio_only(tmp_path):
    audio = _write_audio_only(tmp_path / "audio.ts")
    assert _refusal(audio) == "not a video: no video stream in segment (audio only?)"


@pytest.mark.parametrize(("seconds", "frames"), [(0.04, 1), (0.08, 2)])
def test_too_few_frames(video_factory, seconds, frames):
    message = _refusal(video_factory("few.mp4", seconds=seconds))
    assert message == f"segment too short: {frames} decodable frame(s), at least 3 needed to show motion"


def test_truncated_to_a_few_bytes(hls_stream, tmp_path):
    """Cut inside the first packet: one concealed keyframe at most, which is too short."""
    segment = _write(tmp_path / "stub.ts", (hls_stream / "stream00001.ts").read_bytes()[:1000])
    assert _refusal(segment).startswith("segment too short: 1 decodable frame(s)")


@pytest.mark.parametrize("seconds", [1, 4, 10, 12])
def test_cover_puts_every_frame_of_a_segment_inside_some_window(tmp_path, seconds):
    """By the frames' own timestamps (a segment from mid-stream: PTS far from 0), at the zoo's
    32x2: every frame lies within some window's [start, end), and the windows span the segment."""
    path = write_video(tmp_path / "s.ts", seconds=seconds, size=(192, 108), first_frame=1000)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size)
        times = [float((p - pts[0]) * stream.time_base) for p in pts]
    decoded = decode_segment(path, 32, 2, "cover", size=(64, 48))
    assert decoded.num_frames == len(times) == 25 * seconds
    assert len(decoded.windows) == -(-25 * seconds // 64)
    for t in times:
        assert any(w.start <= t < w.end for w in decoded.windows), t
    assert decoded.windows[0].start == 0 and decoded.windows[-1].end == pytest.approx(seconds)
    assert [w.start for w in decoded.windows] == sorted(w.start for w in decoded.windows)
