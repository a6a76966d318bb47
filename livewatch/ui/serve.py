"""``livewatch ui``: the web page alone, over a store, without a daemon."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from ..components import Sink
from ..health import parse_listen
from .app import create_app, mount
from .security import check_exposure

log = logging.getLogger(__name__)


async def serve(store: Sink, listen: str, token: str | None, started=None,
                media: list[Path] = ()) -> None:
    """Serve the UI over `store` on `listen` until cancelled (SIGINT). `started(url)` is called
    once it listens; stored segments inside the `media` folders play in the page."""
    host, port = parse_listen(listen)
    check_exposure(host, token)
    root = web.Application()
    mount(root, create_app(store, token, media=media))
    runner = web.AppRunner(root, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://{host}:{port}/ui/"
        log.info("the web UI on %s", url)
        if started is not None:
            started(url)
        await asyncio.Event().wait()  # until cancelled
    finally:
        await runner.cleanup()
        await store.close()
