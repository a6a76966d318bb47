"""Decode the frames of a segment the model needs, in one in-order pass, with PyAV.

The demuxer gives every packet's timestamp and keyframe flag without decoding anything
(`packets`: which frame each packet is), which is enough to count frames, plan the windows
(`sampling.plan_windows`) and find the keyframe to start decoding from. ``container.seek`` is not
used: on MPEG-TS it lands on the keyframe *after* the requested time.

Corrupt input is survived, not trusted: every FFmpeg/PyAV failure is a `SegmentError` in words;
a packet that does not decode is skipped and decoding goes on; the frames of a window that did not
decode are concealed with the window's nearest decoded frame (`windows.assemble`), and a window is
refused only when more than `MAX_MISSING` of it is missing. A truncated segment is classified on
what it holds, and says so: its frames are counted against the duration its playlist (or
container) states.

Runs in an executor thread; nothing here touches asyncio.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from livewatch.errors import SegmentError
from livewatch.model.packets import AV_FAILURES, check_duration, demux, number_frames, reason
from livewatch.model.sampling import Windows, plan_windows
from livewatch.model.windows import MAX_MISSING, Decoded, assemble

BILINEAR = Interpolation.BILINEAR

def _one_scaler_thread() -> dict:
    """Recent PyAV gives a new swscale context an automatic thread pool unless told otherwise;
    on a busy small CPU, setting that up costs more than it saves on 32 small frames. Older PyAV
    has no ``threads`` argument (and no pool)."""
    try:
        VideoReformatter().reformat(av.VideoFrame(16, 16, "yuv420p"), 8, 8, "rgb24", threads=1)
    except TypeError:
        return {}
    return {"threads": 1}


_ONE_THREAD = _one_scaler_thread()

MIN_FRAMES = 3
"""Fewer frames than this show no motion: GluonCV's window is then frame 0 repeated."""

CONTAINERS = ("mpegts", "mp4")
"""What HLS and our one-shot files come in (FFmpeg calls MP4 "mov,mp4,m4a,3gp,3g2,mj2")."""

CODECS = ("h264", "hevc")
"""The video codecs HLS carries (RFC 8216); anything else is refused before decoding."""

MAX_SECONDS = 60.0
"""A segment longer than this is refused before decoding (HLS segments are seconds long)."""


@dataclass
class Clip:
    """A segment's one window of frames, ready for `preprocess.to_tensor`."""

    frames: np.ndarray  # uint8, (T, height, width, 3) RGB at the requested size
    indices: list[int]  # frame ids sampled, numbered as described above
    num_frames: int  # frames in the segment
    fps: float | None
    width: int  # the source size
    height: int
    decode_ms: float
    concealed: int = 0  # window positions filled with a neighbouring frame


def decode_clip(src: str | os.PathLike | BinaryIO, new_length: int = 32, new_step: int = 1,
                size: tuple[int, int] = (340, 256), codecs: tuple[str, ...] | list[str] = CODECS,
                max_seconds: float | None = MAX_SECONDS) -> Clip:
    """GluonCV's test window of `src` (`decode_segment` with ``windows="center"``)."""
    decoded = decode_segment(src, new_length, new_step, "center", size, codecs, max_seconds)
    window = decoded.windows[0]
    return Clip(frames=decoded.frames[0], indices=window.indices, num_frames=decoded.num_frames,
                fps=decoded.fps, width=decoded.width, height=decoded.height,
                decode_ms=decoded.decode_ms, concealed=window.concealed)


def decode_segment(
    src: str | os.PathLike | BinaryIO,
    new_length: int = 32,
    new_step: int = 1,
    windows: Windows = "center",
    size: tuple[int, int] = (340, 256),
    codecs: tuple[str, ...] | list[str] = CODECS,
    max_seconds: float | None = MAX_SECONDS,
    stated_seconds: float | None = None,
    max_missing: float = MAX_MISSING,
) -> Decoded:
    """Decode the `windows` of `src` (see `sampling.plan_windows`), resized to `size` (width,
    height) by FFmpeg, every frame decoded at most once and only the frames used scaled.

    The resize is swscale's bilinear inside the decoder, as decord's ``scale`` filter did it.
    Raises SegmentError, with the reason in words, for anything that is not decodable video, and
    OSError when `src` cannot be read at all. The container, the codec (`codecs`) and the
    duration (`max_seconds`) are checked before any frame is decoded. `stated_seconds` is the
    segment's duration as its playlist gives it (else the container's is used), to tell a
    truncated segment.
    """
    started = time.perf_counter()
    if _byte_size(src) == 0:
        raise SegmentError("segment is empty (0 bytes)")
    try:
        container = av.open(src if hasattr(src, "read") else os.fspath(src))
    except AV_FAILURES as e:
        raise SegmentError(f"not a video: FFmpeg cannot read it as a media file ({reason(e)})") from e
    try:
        with container:
            return _decode_open(container, new_length, new_step, windows, size, codecs,
                                max_seconds, stated_seconds, max_missing, started)
    except av.FFmpegError as e:  # FFmpeg's (probing, closing...); PyAV's own are caught where called
        raise SegmentError(f"could not decode: {reason(e)}") from e


def _decode_open(container, new_length, new_step, windows, size, codecs, max_seconds,
                 stated_seconds, max_missing, started) -> Decoded:
    if not container.streams.video:
        hint = " (audio only?)" if container.streams.audio else ""
        raise SegmentError(f"not a video: no video stream in segment{hint}")
    stream = container.streams.video[0]
    _check_input(container, stream, codecs, max_seconds)
    stream.codec_context.thread_count = 1  # faster than threads for a ~46-frame window on 2 cores
    packets = demux(container, stream)
    check_duration(stream, packets, max_seconds)
    order, times = number_frames(packets, stream.time_base)
    if len(order) < MIN_FRAMES:
        raise SegmentError(
            f"segment too short: {len(order)} decodable frame(s), "
            f"at least {MIN_FRAMES} needed to show motion"
        )
    plan = plan_windows(len(order), new_length, new_step, windows)
    got = _decode(stream, packets, order, {i for w in plan for i in w}, size)
    rate = stream.average_rate
    fps = float(rate) if rate and rate > 0 else None
    if stated_seconds is None and container.duration and container.duration > 0:
        stated_seconds = container.duration / av.time_base
    return assemble(
        plan, got, times, new_step=new_step, fps=fps, stated_seconds=stated_seconds,
        max_missing=max_missing, width=stream.codec_context.width,
        height=stream.codec_context.height, decode_ms=(time.perf_counter() - started) * 1000,
    )


def _check_input(container, stream, codecs, max_seconds) -> None:
    formats = set(container.format.name.split(","))
    if not formats & set(CONTAINERS):
        raise SegmentError(f"unsupported container {container.format.name!r}: livewatch reads "
                           f"{' and '.join(CONTAINERS)}")
    codec = stream.codec_context.name
    if codecs and codec not in codecs:
        raise SegmentError(f"unsupported video codec {codec!r}: allowed are {', '.join(codecs)}")
    if max_seconds and container.duration and container.duration / av.time_base > max_seconds:
        raise SegmentError(f"segment too long: {container.duration / av.time_base:.0f} s, the "
                           f"limit is {max_seconds:g} s")


def _byte_size(src: str | os.PathLike | BinaryIO) -> int | None:
    if hasattr(src, "read"):
        if not getattr(src, "seekable", lambda: False)():
            return None
        here = src.tell()
        end = src.seek(0, os.SEEK_END)
        src.seek(here)
        return end - here
    return os.stat(src).st_size


class RgbScaler:
    """Frames to (height, width, 3) RGB arrays: swscale's bilinear, one context, one thread."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return self._reformatter.reformat(frame, self.width, self.height, "rgb24",
                                          interpolation=BILINEAR, **_ONE_THREAD).to_ndarray()


def _decode(stream: av.VideoStream, packets: list[av.Packet], order: list[int], wanted: set[int],
            size: tuple[int, int]) -> dict[int, np.ndarray]:
    """The `wanted` frames that decode, by frame id: one pass in decode order from the last
    keyframe at or before the first of them until the last is out (or the packets end).

    Each packet's timestamps are replaced by its frame id (pts) and its place in decode order
    (dts) before decoding, so a frame comes out named by its id whatever the input's timestamps
    were (duplicated by a splice, or damaged). A packet the decoder rejects is skipped.
    """
    first = min(wanted)
    # No keyframe before the window happens only to leading frames of an open GOP: try from 0.
    start = max((k for k, p in enumerate(packets) if p.is_keyframe and order[k] <= first), default=0)
    frames: dict[int, Future] = {}
    context = stream.codec_context
    # The decoder is single-threaded (see decode_segment): the wanted frames are scaled and
    # converted on a second thread meanwhile, one scaler for the segment in decode order (a new
    # one per frame costs as much again). FFmpeg releases the GIL for both, so at 1080p the
    # windows take ~max(decode, scale) instead of their sum; the pixels are the same either way.
    with ThreadPoolExecutor(1, thread_name_prefix="scale") as pool:
        scale = RgbScaler(*size)
        try:
            for k in [*range(start, len(packets)), None]:
                packet = None if k is None else packets[k]
                if packet is not None:
                    packet.pts, packet.dts = order[k], k
                    # A frame no window uses that no other frame refers to (a non-reference
                    # B-frame) need not be decoded at all: ~1 in 6 of the frames of a live encoder.
                    context.skip_frame = "DEFAULT" if order[k] in wanted else "NONREF"
                try:
                    out = stream.decode(packet)
                except AV_FAILURES:
                    continue  # a damaged packet: its frame is missing, the decoder goes on
                for frame in out:
                    i = frame.pts
                    if i in wanted and i not in frames:
                        frames[i] = pool.submit(scale, frame)
                if len(frames) == len(wanted):
                    break
        finally:
            context.skip_frame = "DEFAULT"
        return {i: image for i, image in ((i, _result(f)) for i, f in frames.items())
                if image is not None}


def _result(future: Future) -> np.ndarray | None:
    """A scaled frame, or None where swscale rejected a damaged frame (it is then missing)."""
    try:
        return future.result()
    except AV_FAILURES:
        return None
