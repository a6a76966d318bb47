"""Who may read the UI, and which files it may serve.

Loopback needs nothing; any other address needs a token, given as ``Authorization: Bearer``,
a ``?token=`` query (which sets an HttpOnly cookie, so the page's own requests and its
EventSource carry it) or that cookie. Static files resolve inside their root only: ``..``,
absolute paths and symlinks that lead out are refused.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path, PurePosixPath

from aiohttp import web

from ..errors import ConfigError

TOKEN_ENV = "LIVEWATCH_UI_TOKEN"
COOKIE = "livewatch_ui_token"


def token_from_env(configured: str | None) -> str | None:
    """The configured token, else the environment's (empty means none)."""
    return configured or os.environ.get(TOKEN_ENV) or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or "" (every interface): not loopback


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve the UI on a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"the web UI would listen on {host or 'every interface'!r} without a token: set "
            f"ui.token (or {TOKEN_ENV}), listen on 127.0.0.1, or set ui.enabled = false")


def token_middleware(token: str | None):
    """An aiohttp middleware that refuses requests without `token` (none: allows all)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if not token:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        offered = [header[7:] if header.startswith("Bearer ") else "",
                   request.cookies.get(COOKIE, ""), request.query.get("token", "")]
        if not any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered):
            raise web.HTTPUnauthorized(text="livewatch UI: a token is required "
                                       "(?token=..., or Authorization: Bearer ...)\n")
        response = await handler(request)
        if offered[2] and not offered[1] and not response.prepared:
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    return middleware


def safe_path(root: Path, name: str) -> Path:
    """`name` inside `root`, or HTTPNotFound/HTTPForbidden: no absolute paths, no ``..``, no
    symlink (or anything else) that resolves outside `root`."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or "\\" in name or ".." in pure.parts or ":" in name:
        raise web.HTTPForbidden(text="refused path\n")
    root = root.resolve()
    path = (root / pure).resolve()
    if not path.is_relative_to(root):
        raise web.HTTPForbidden(text="refused path\n")
    if not path.is_file():
        raise web.HTTPNotFound()
    return path
