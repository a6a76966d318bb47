"""A segment's video packets, demuxed without decoding, and the frame each one is.

Frames are numbered as a full decode from the start would output them: in presentation order,
from the segment's first keyframe (what comes before it cannot be decoded). Where the decode
timestamps run backwards (two encodes spliced into one file), a new run of frames begins: it too
starts from its own first keyframe and is ordered on its own, after the run before it.

Runs in an executor thread; nothing here touches asyncio.
"""
from __future__ import annotations

import av
import numpy as np

from livewatch.errors import SegmentError

AV_FAILURES = (av.FFmpegError, IndexError, KeyError, ValueError, RuntimeError)
"""What PyAV raises on corrupt input besides FFmpeg's own errors (e.g. IndexError from its
demuxer when corruption makes a new stream appear mid-file). Caught only around the calls into
PyAV, so a bug of ours still shows as one; MemoryError is left alone (running out is transient)."""


def reason(error: Exception) -> str:
    if isinstance(error, av.FFmpegError):
        return error.strerror or str(error)
    return f"the demuxer or decoder failed on corrupt data ({type(error).__name__}: {error})"


def demux(container: av.container.InputContainer, stream: av.VideoStream) -> list[av.Packet]:
    """The stream's packets in decode order from its first keyframe, cut short where data ends.
    Packets without a timestamp (a damaged header) cannot be placed and are left out, and so are
    those of a spliced-on run before its own first keyframe (they refer to pictures not here)."""
    packets: list[av.Packet] = []
    try:
        for packet in container.demux(stream):
            if packet.size and packet.stream.index == stream.index:
                packets.append(packet)
    except AV_FAILURES as e:
        if not packets:
            raise SegmentError(f"could not decode: {reason(e)}") from e
    if not packets:
        raise SegmentError("not a video: the video stream holds no frames")
    timed = [p for p in packets if p.pts is not None]
    if not timed:
        raise SegmentError("could not decode: the video packets carry no timestamps")
    kept, waiting, previous = [], True, None  # waiting: for the keyframe a run starts from
    for p in timed:
        if previous is not None and p.dts is not None and p.dts < previous:
            waiting = True  # a new run (see `number_frames`): it too decodes from its first keyframe
        if p.dts is not None:
            previous = p.dts
        waiting = waiting and not p.is_keyframe
        if not waiting:
            kept.append(p)
    if not kept:
        raise SegmentError("could not decode: no keyframe in the segment to start from")
    return kept


def number_frames(packets: list[av.Packet], time_base) -> tuple[list[int], list[float]]:
    """Each packet's frame id (presentation order, run after run) and each frame's time in
    seconds from the segment's first frame.

    A run ends where the decode timestamps go backwards: two encodes spliced into one file, or a
    timestamp wrap. Within a run frames are ordered by their presentation timestamps; a run's
    times follow the one before it, one frame duration after its last frame.
    """
    runs: list[list[int]] = [[]]
    previous = None
    for k, p in enumerate(packets):
        if previous is not None and p.dts is not None and p.dts < previous:
            runs.append([])
        if p.dts is not None:
            previous = p.dts
        runs[-1].append(k)
    base = float(time_base) if time_base else 1 / 90000
    order, times, offset = [0] * len(packets), [], 0.0
    for run in runs:
        ranked = sorted(run, key=lambda k: (packets[k].pts, k))
        first_pts = packets[ranked[0]].pts
        for k in ranked:
            order[k] = len(times)
            times.append(offset + (packets[k].pts - first_pts) * base)
        steps = np.diff([packets[k].pts for k in ranked]) * base
        offset = times[-1] + (float(np.median(steps)) if len(steps) else 0.04)
    return order, times


def check_duration(stream, packets, max_seconds) -> None:
    """The demuxed packets' time span (the container's duration is only an estimate on MPEG-TS).
    Where two encodes are spliced, only each run's own span counts (see `number_frames`)."""
    if not max_seconds or not packets or stream.time_base is None:
        return
    span, low, high, previous = 0, None, None, None
    for p in packets:
        if previous is not None and p.dts is not None and p.dts < previous:
            span, low, high = span + (high - low), None, None  # a new run
        if p.dts is not None:
            previous = p.dts
        low = p.pts if low is None else min(low, p.pts)
        high = p.pts if high is None else max(high, p.pts)
    seconds = float((span + (high - low)) * stream.time_base)
    if seconds > max_seconds:
        raise SegmentError(f"segment too long: {seconds:.0f} s, the limit is {max_seconds:g} s")
