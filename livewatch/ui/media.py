"""A stored segment, played in the page: remuxed to MP4 on request (no re-encoding).

Only a segment the store has a detection for, whose file lies inside a folder a local source
reads (`Source.media_root`, or ``livewatch ui --media DIR``): a URI with ``..``, one outside
those folders, a symlink that leads out, or a remote URI is refused.
"""
from __future__ import annotations

import asyncio
import io
from pathlib import Path

from aiohttp import web

MAX_BYTES = 64 * 1024 * 1024  # a bigger file is refused (the daemon's max_segment_mb default)


def local_file(uri: str, roots: list[Path]) -> Path:
    """The file of stored segment `uri`, if it lies inside one of `roots`; else an HTTP error."""
    if "://" in uri or not roots:
        raise web.HTTPNotFound(text="not a local segment\n")
    path = Path(uri)
    if not path.is_absolute() or ".." in path.parts:
        raise web.HTTPForbidden(text="refused path\n")
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        raise web.HTTPForbidden(text="refused path\n")
    if not real.is_file():
        raise web.HTTPNotFound(text="the segment's file is gone\n")
    if real.stat().st_size > MAX_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BYTES, real.stat().st_size)
    return real


def remux(path: Path) -> bytes:
    """The video stream of `path` in a fragmented MP4 (packets copied, not re-encoded). Blocking."""
    import av

    out = io.BytesIO()
    with av.open(str(path)) as src, av.open(out, "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof"}) as dst:
        video = src.streams.video[0]
        copy = dst.add_stream_from_template(video)
        for packet in src.demux(video):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = copy
            dst.mux(packet)
    return out.getvalue()


async def segment_mp4(path: Path, request: web.Request) -> web.Response:
    """The segment as MP4; a ``Range`` request gets those bytes (206): browsers seek only in a
    resource served in ranges (the page starts an event's segment where the event starts)."""
    try:
        body = await asyncio.to_thread(remux, path)
    except Exception as exc:  # not a video PyAV can read: say so, never a traceback
        raise web.HTTPUnprocessableEntity(text=f"cannot remux the segment: {type(exc).__name__}\n")
    headers = {"Cache-Control": "private", "Accept-Ranges": "bytes"}
    try:
        wanted = request.http_range
    except ValueError:  # a malformed Range header is ignored, as RFC 9110 allows
        wanted = slice(None, None)
    if wanted.start is None and wanted.stop is None:
        return web.Response(body=body, content_type="video/mp4", headers=headers)
    start, stop, _ = wanted.indices(len(body))
    if start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{len(body)}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(body)}"
    return web.Response(status=206, body=body[start:stop], content_type="video/mp4", headers=headers)
