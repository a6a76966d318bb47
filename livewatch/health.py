"""The daemon's HTTP endpoint: ``/livez``, ``/readyz`` and Prometheus' ``/metrics``.

It runs on the daemon's own event loop (aiohttp), so ``/livez`` answering means the loop is not
stalled. ``/readyz`` is 200 once every component started and until shutdown begins (503 before
and after), and 503 while the classifier fails on valid input (until a classification succeeds
again), which is what an orchestrator's readiness probe wants. It reads the daemon's `Status` and
`Metrics`; it never calls back into the daemon. Loopback by default: metrics
name streams and files, so exposing them is the operator's choice.
"""
from __future__ import annotations

import logging
import time
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .errors import ConfigError
from .metrics import Metrics
from .status import Status
from .ui.app import mount

log = logging.getLogger(__name__)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (or `[ipv6]:port`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"daemon.health_listen={value!r}: use host:port, e.g. 127.0.0.1:9108")
    return host.strip("[]") or "127.0.0.1", int(port)


class HealthServer:
    def __init__(self, status: Status, metrics: Metrics, listen: str, required: bool = True,
                 ui: web.Application | None = None):
        """`required`: a port that cannot be bound stops the daemon (the user asked for it);
        otherwise (the default address) it is logged and the daemon runs without the endpoint.
        `ui`: the web page's app (`livewatch.ui`), mounted under ``/ui/``."""
        self.status, self.metrics, self.ui = status, metrics, ui
        self.required = required
        self.host, self.port = parse_listen(listen)
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.ui is not None:
            mount(app, self.ui)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            problem = (f"cannot serve health and metrics on {self.host}:{self.port} "
                       f"({exc.strerror}); set daemon.health_listen to a free host:port, or to "
                       "\"\" to turn it off")
            if self.required:
                raise ConfigError(problem) from None
            log.warning("%s; running without it", problem)
            return
        if self.port == 0:  # an ephemeral port: say which one was taken
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("health and metrics on %s (/livez, /readyz, /metrics)%s", self.url,
                 f"; the web UI on {self.url}/ui/" if self.ui is not None else "")

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive",
                                  "uptime_s": round(time.monotonic() - self._started, 1)})

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.json_response(self.status.summary(), status=200 if self.status.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
