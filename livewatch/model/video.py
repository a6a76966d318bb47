"""Decode the frames of a segment the model needs, and only those, with PyAV.

Frames are numbered as a full decode from the start would output them: in presentation order,
from the segment's first keyframe (what comes before it cannot be decoded). The demuxer gives
every packet's timestamp and keyframe flag without decoding anything, which is enough to count
frames, pick the window (`sampling.window_indices`) and find the keyframe to start decoding from.
``container.seek`` is not used: on MPEG-TS it lands on the keyframe *after* the requested time.

A truncated segment is classified on what it holds: frames are counted from the packets the
demuxer could read, and a frame FFmpeg can only partly decode is taken as FFmpeg conceals it.

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
from livewatch.model.sampling import window_indices

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
    """A segment's window of frames, ready for `preprocess.to_tensor`."""

    frames: np.ndarray  # uint8, (T, height, width, 3) RGB at the requested size
    indices: list[int]  # frame ids sampled, numbered as described above
    num_frames: int  # frames in the segment
    fps: float | None
    width: int  # the source size
    height: int
    decode_ms: float


def decode_clip(
    src: str | os.PathLike | BinaryIO,
    new_length: int = 32,
    new_step: int = 1,
    size: tuple[int, int] = (340, 256),
    codecs: tuple[str, ...] | list[str] = CODECS,
    max_seconds: float | None = MAX_SECONDS,
) -> Clip:
    """Decode GluonCV's test window of `src`, resized to `size` (width, height) by FFmpeg.

    The resize is swscale's bilinear inside the decoder, as decord's ``scale`` filter did it.
    Raises SegmentError, with the reason in words, for anything that is not decodable video, and
    OSError when `src` cannot be read at all. The container, the codec (`codecs`) and the
    duration (`max_seconds`) are checked before any frame is decoded.
    """
    started = time.perf_counter()
    if _byte_size(src) == 0:
        raise SegmentError("segment is empty (0 bytes)")
    try:
        container = av.open(src if hasattr(src, "read") else os.fspath(src))
    except av.FFmpegError as e:
        raise SegmentError(f"not a video: FFmpeg cannot read it as a media file ({_reason(e)})") from e
    with container:
        if not container.streams.video:
            hint = " (audio only?)" if container.streams.audio else ""
            raise SegmentError(f"not a video: no video stream in segment{hint}")
        stream = container.streams.video[0]
        _check_input(container, stream, codecs, max_seconds)
        stream.codec_context.thread_count = 1  # faster than threads for a ~46-frame window on 2 cores
        packets = _demux(container, stream)
        _check_duration(stream, packets, max_seconds)
        if len(packets) < MIN_FRAMES:
            raise SegmentError(
                f"segment too short: {len(packets)} decodable frame(s), "
                f"at least {MIN_FRAMES} needed to show motion"
            )
        indices = window_indices(len(packets), new_length, new_step)
        frames = _decode(stream, packets, indices, size)
        rate = stream.average_rate
        return Clip(
            frames=np.stack([frames[i] for i in indices]),
            indices=indices,
            num_frames=len(packets),
            fps=float(rate) if rate else None,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            decode_ms=(time.perf_counter() - started) * 1000,
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


def _check_duration(stream, packets, max_seconds) -> None:
    """The demuxed packets' time span (the container's duration is only an estimate on MPEG-TS)."""
    if not max_seconds or not packets or stream.time_base is None:
        return
    times = [p.pts for p in packets if p.pts is not None]
    if times and (max(times) - min(times)) * stream.time_base > max_seconds:
        seconds = float((max(times) - min(times)) * stream.time_base)
        raise SegmentError(f"segment too long: {seconds:.0f} s, the limit is {max_seconds:g} s")


def _byte_size(src: str | os.PathLike | BinaryIO) -> int | None:
    if hasattr(src, "read"):
        if not getattr(src, "seekable", lambda: False)():
            return None
        here = src.tell()
        end = src.seek(0, os.SEEK_END)
        src.seek(here)
        return end - here
    return os.stat(src).st_size


def _reason(error: av.FFmpegError) -> str:
    return error.strerror or str(error)


def _demux(container: av.container.InputContainer, stream: av.VideoStream) -> list[av.Packet]:
    """The stream's packets in decode order from its first keyframe, cut short where data ends."""
    packets: list[av.Packet] = []
    try:
        for packet in container.demux(stream):
            if packet.size:
                packets.append(packet)
    except av.FFmpegError as e:
        if not packets:
            raise SegmentError(f"could not decode: {_reason(e)}") from e
    if not packets:
        raise SegmentError("not a video: the video stream holds no frames")
    first = next((k for k, p in enumerate(packets) if p.is_keyframe), None)
    if first is None:
        raise SegmentError("could not decode: no keyframe in the segment to start from")
    if any(p.pts is None for p in packets):
        raise SegmentError("could not decode: the video packets carry no timestamps")
    return packets[first:]


class RgbScaler:
    """Frames to (height, width, 3) RGB arrays: swscale's bilinear, one context, one thread."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return self._reformatter.reformat(frame, self.width, self.height, "rgb24",
                                          interpolation=BILINEAR, **_ONE_THREAD).to_ndarray()


def _decode(
    stream: av.VideoStream, packets: list[av.Packet], indices: list[int], size: tuple[int, int]
) -> dict[int, np.ndarray]:
    """Decode from the last keyframe at or before the window until its last frame is out."""
    presentation = sorted(p.pts for p in packets)
    index_of = {pts: i for i, pts in enumerate(presentation)}
    wanted = set(indices)
    first_pts = presentation[indices[0]]
    # No keyframe before the window happens only to leading frames of an open GOP: try from 0.
    start = max((k for k, p in enumerate(packets) if p.is_keyframe and p.pts <= first_pts), default=0)
    frames: dict[int, Future] = {}
    context = stream.codec_context
    # The decoder is single-threaded (see decode_clip): the window's frames are scaled and
    # converted on a second thread meanwhile, one scaler for the clip in decode order (a new one
    # per frame costs as much again). FFmpeg releases the GIL for both, so at 1080p the clip
    # takes ~max(decode, scale) instead of their sum; the pixels are the same either way.
    with ThreadPoolExecutor(1, thread_name_prefix="scale") as pool:
        scale = RgbScaler(*size)
        try:
            for packet in [*packets[start:], None]:
                # A frame shown before the window that no other frame refers to (a non-reference
                # B-frame) need not be decoded at all: ~1 in 6 of the frames from a live encoder.
                before = packet is not None and packet.pts < first_pts
                context.skip_frame = "NONREF" if before else "DEFAULT"
                for frame in stream.decode(packet):
                    i = index_of.get(frame.pts)
                    if i in wanted:
                        frames[i] = pool.submit(scale, frame)
                if len(frames) == len(wanted):
                    return {i: f.result() for i, f in frames.items()}
        except av.FFmpegError as e:
            raise SegmentError(f"could not decode: {_reason(e)}") from e
        finally:
            context.skip_frame = "DEFAULT"
    missing = sorted(wanted - frames.keys())
    raise SegmentError(f"could not decode: frame(s) {missing} of {len(packets)} did not decode")
