"""The `webhook` sink: POSTs event changes (and, optionally, detections) as JSON to a URL.

Each request carries ``X-Livewatch-Signature: sha256=<hex>`` (HMAC-SHA256 of the body with the
configured `secret`) and ``Idempotency-Key`` (``<event id>:<revision>``, or ``detection:<uri>``),
so a receiver can check the sender and drop repeats: delivery is at least once. Connection errors,
timeouts, 5xx and 429 are retried with backoff (`livewatch.retry`); any other 4xx is permanent:
logged, and not sent again.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Literal

import aiohttp
from pydantic import AnyHttpUrl, Field, SecretStr

from ..components import Options, Sink
from ..contract import Detection
from ..errors import TransientError
from ..hookspecs import hookimpl
from ..notify import EventChange
from ..retry import retry

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Livewatch-Signature"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: what a receiver recomputes to check it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookOptions(Options):
    url: AnyHttpUrl = Field(description="where to POST (http or https)")
    secret: SecretStr | None = Field(
        None, description=f"key of the HMAC-SHA256 signature of each body, sent as {SIGNATURE_HEADER}")
    changes: list[Literal["opened", "updated", "closed"]] = Field(
        ["opened", "updated", "closed"], description="which event changes to send")
    labels: list[str] = Field([], description="only events of these labels (empty: all)")
    streams: list[str] = Field([], description="only events of these streams (empty: all)")
    min_probability: float = Field(
        0.0, ge=0, le=1, description="only events whose peak probability reaches this")
    detections: bool = Field(False, description="also POST every detection (filtered by streams)")
    timeout: float = Field(10.0, gt=0, description="seconds one request may take")
    retries: int = Field(
        5, ge=0, description="retries of a request that failed transiently (connection, timeout, "
        "5xx, 429), with backoff; then an event change waits for the next try, a detection fails "
        "its write (the daemon retries it)")
    retry_max_seconds: float = Field(30.0, gt=0, description="longest wait between two attempts")


class WebhookSink(Sink):
    """POSTs event changes (and optionally detections) as signed JSON to a URL."""

    name = "webhook"
    Options = WebhookOptions

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.timeout))

    async def close(self) -> None:
        if getattr(self, "_session", None) is not None:
            await self._session.close()

    def wants(self, change: EventChange) -> bool:
        o, e = self.options, change.event
        return (change.type in o.changes and (not o.labels or e["label"] in o.labels)
                and (not o.streams or e["stream"] in o.streams)
                and e["peak_probability"] >= o.min_probability)

    async def notify(self, change: EventChange) -> None:
        if self.wants(change):
            await self._post(change.to_dict(), f"{change.id}:{change.revision}")

    async def write(self, detection: Detection) -> None:
        if self.options.detections and (not self.options.streams
                                        or detection.stream in self.options.streams):
            body = {"type": "detection", "detection": json.loads(detection.model_dump_json())}
            await self._post(body, f"detection:{detection.uri}")

    async def _post(self, payload: dict, key: str) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.options.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.options.secret.get_secret_value(), body)
        url = str(self.options.url)

        async def attempt() -> None:
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if response.status < 400:
                        return
                    text = (await response.text())[:200]
                    if response.status >= 500 or response.status == 429:
                        raise TransientError(f"HTTP {response.status}: {text}")
                    log.error("webhook %r: %s refused %s for good (HTTP %d: %s); not sending it "
                              "again", self.instance, url, key, response.status, text)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientError(f"{type(exc).__name__}: {exc}") from exc

        await retry(attempt, what=f"webhook {self.instance!r}: POST {key}", on=TransientError,
                    attempts=self.options.retries + 1, first=0.2,
                    longest=self.options.retry_max_seconds, stop=self.stopping, logger=log)


@hookimpl
def register_sinks(register):
    register(WebhookSink)

