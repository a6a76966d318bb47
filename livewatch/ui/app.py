"""The UI's aiohttp sub-app: the page, its static files and a read-only JSON API.

Everything is read through a queryable sink (`Sink.query`, `Sink.query_windows`), so any sink
that can read back what it stored serves the page. No endpoint changes state.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path

from aiohttp import web

from ..components import DetectionQuery, Sink
from ..contract import Detection
from ..errors import ConfigError
from ..status import Status
from .media import local_file, segment_mp4
from .security import safe_path, token_middleware

log = logging.getLogger(__name__)

STATIC = Path(str(files(__package__) / "static"))
STORE = web.AppKey("store", Sink)
STATUS = web.AppKey("status", object)
STOPPING = web.AppKey("stopping", asyncio.Event)
MEDIA = web.AppKey("media", list)
POLL_S = 0.5  # how often the event stream looks for new detections
STALE_S = 300  # a stream with nothing newer than this is shown as stale
MAX_LIMIT = 5000
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; media-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


def create_app(store: Sink, token: str | None = None, status: Status | None = None,
               media: list[Path] = ()) -> web.Application:
    """The UI over `store` (a queryable sink); `token` required when given; `status` the running
    daemon's, when there is one; `media` the folders stored segments may be played from."""
    app = web.Application(middlewares=[token_middleware(token), _headers])
    app[STORE], app[STATUS], app[STOPPING] = store, status, asyncio.Event()
    app[MEDIA] = [Path(p) for p in media]
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name:.+}", _static)
    app.router.add_get("/api/streams", _streams)
    app.router.add_get("/api/detections", _detections)
    app.router.add_get("/api/windows", _windows)
    app.router.add_get("/api/errors", _errors)
    app.router.add_get("/api/thumbnail", _thumbnail)
    app.router.add_get("/api/segment", _segment)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/live", _live)
    app.on_shutdown.append(_stop_streams)
    return app


def mount(parent: web.Application, ui: web.Application) -> None:
    """Mount `ui` under ``/ui/`` of `parent`, with ``/`` and ``/ui`` leading to it."""
    async def to_ui(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/" + (f"?{request.query_string}" if request.query_string else ""))

    parent.router.add_get("/", to_ui)
    parent.router.add_get("/ui", to_ui)
    parent.add_subapp("/ui", ui)


@web.middleware
async def _headers(request: web.Request, handler):
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.FileResponse:
    return web.FileResponse(safe_path(STATIC, request.match_info["name"]),
                            headers={"Cache-Control": "no-cache"})


def _time(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}={value!r}: an ISO-8601 time\n") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _query(request: web.Request, default_limit: int = 200, **extra) -> DetectionQuery:
    try:
        limit = min(int(request.query.get("limit", default_limit)), MAX_LIMIT)
    except ValueError:
        raise web.HTTPBadRequest(text="limit: a number\n") from None
    return DetectionQuery(stream=request.query.get("stream") or None, since=_time(request, "since"),
                          until=_time(request, "until"), limit=max(limit, 1), **extra)


async def _read(request: web.Request, query: DetectionQuery, windows: bool = False) -> list:
    """Detections (or window rows) from the store; none where it has nothing yet."""
    store = request.app[STORE]
    try:
        if windows:
            return await store.query_windows(query)
        return await store.query(query)
    except ConfigError as exc:  # no store (file) yet, or a sink that keeps no windows
        if str(exc) not in _WARNED:
            _WARNED.add(str(exc))
            log.warning("ui: %s", exc)
        return []


_WARNED: set[str] = set()  # what the UI could not read, logged once


def _dump(detections: list[Detection]) -> list[dict]:
    return [d.model_dump(mode="json") for d in detections]


async def _detections(request: web.Request) -> web.Response:
    return web.json_response({"detections": _dump(await _read(request, _query(request)))})


async def _errors(request: web.Request) -> web.Response:
    query = _query(request, errors_only=True)
    return web.json_response({"errors": _dump(await _read(request, query))})


async def _windows(request: web.Request) -> web.Response:
    query = _query(request, default_limit=2000)
    return web.json_response({"windows": await _read(request, query, windows=True)})


async def _thumbnail(request: web.Request) -> web.Response:
    """The JPEG the store keeps for window `n` of segment `uri` (of `stream`, where the page
    says): a lookup by key in the store, never a path on disk."""
    uri, n = request.query.get("uri", ""), request.query.get("n", "")
    if not uri or not n.isdigit():
        raise web.HTTPBadRequest(text="uri= and n= (a window number) are required\n")
    try:
        jpeg = await request.app[STORE].thumbnail(uri, int(n), stream=request.query.get("stream"))
    except ConfigError:
        jpeg = None
    if jpeg is None:
        raise web.HTTPNotFound(text="no thumbnail\n")
    return web.Response(body=jpeg, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


async def _events(request: web.Request) -> web.Response:
    """Activity events overlapping [since, until), from a sink that keeps them (its
    ``query_events``, as ``livewatch events`` reads them); none from one that does not."""
    reader = getattr(request.app[STORE], "query_events", None)
    try:
        events = await reader(_query(request, default_limit=500)) if reader is not None else []
    except ConfigError:
        events = []
    return web.json_response({"events": events})


async def _segment(request: web.Request) -> web.Response:
    """A stored segment's video as MP4 (``stream`` and ``uri``): only one the store knows."""
    uri, stream = request.query.get("uri", ""), request.query.get("stream", "")
    if not uri or not stream:
        raise web.HTTPBadRequest(text="stream= and uri= are required\n")
    path = local_file(uri, request.app[MEDIA])  # refused before the store is asked
    known = await _read(request, DetectionQuery(stream=stream, limit=MAX_LIMIT))
    if uri not in {d.uri for d in known}:
        raise web.HTTPNotFound(text="no such segment in the store\n")
    return await segment_mp4(path, request)


async def _streams(request: web.Request) -> web.Response:
    """One entry per stream seen in the last 24 h: its latest detection and counts."""
    now = datetime.now(timezone.utc)
    recent = await _read(request, DetectionQuery(since=now - timedelta(hours=24), limit=MAX_LIMIT))
    latest: dict[str, Detection] = {}
    counts: dict[str, Counter] = {}
    for d in recent:  # oldest first: the last one per stream wins
        latest[d.stream] = d
        c = counts.setdefault(d.stream, Counter())
        c["detections"] += 1
        c["errors" if d.error else "classified"] += 1
    streams = []
    for name in sorted(latest):
        d = latest[name]
        seen = datetime.fromisoformat(d.created_at.replace("Z", "+00:00"))
        age = (now - seen).total_seconds()
        streams.append({
            "stream": name, "label": d.label, "probability": d.probability, "error": d.error,
            "at": d.start.isoformat() if d.start else None, "stored_at": d.created_at,
            "age_s": round(age, 1), "latency_ms": d.latency_ms, "windows": len(d.windows),
            "uri": d.uri,
            "counts": {"detections": 0, "classified": 0, "errors": 0, **counts[name]},
            "health": "error" if d.error else "stale" if age > STALE_S else "ok",
        })
    status = request.app[STATUS]
    return web.json_response({"streams": streams,
                              "daemon": status.summary() if status is not None else None})


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``detection`` for each newly stored detection (the browser's
    EventSource reconnects by itself; ``retry`` says after how long)."""
    stopping = request.app[STOPPING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
    seen = {(d.uri, d.created_at) for d in await _read(request, DetectionQuery(limit=50))}
    idle = 0.0
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), POLL_S)
            break
        except TimeoutError:
            pass
        new = [d for d in await _read(request, DetectionQuery(limit=50))
               if (d.uri, d.created_at) not in seen]
        idle += POLL_S
        try:
            for d in new:
                seen.add((d.uri, d.created_at))
                data = json.dumps(d.model_dump(mode="json"))
                await response.write(f"event: detection\ndata: {data}\n\n".encode())
            if new or idle >= 15:
                idle = 0.0
                if not new:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, ConnectionError):
            break
        if len(seen) > 1000:
            seen = {(d.uri, d.created_at) for d in await _read(request, DetectionQuery(limit=50))}
    return response
