"""The `mqtt` sink: event changes on an MQTT broker, in Frigate's convention, so Home Assistant
and Node-RED users can wire them up without code.

- ``<prefix>/events``: each change, ``{"type": "new" | "update" | "end", "before", "after"}``
  (`before`: the event as last published by this daemon, null at first or after a restart);
- ``<prefix>/<stream>/activity`` (retained): the stream's current activity, ``{"label",
  "probability", "active", "event"}``;
- ``<prefix>/available`` (retained): ``online`` once connected, ``offline`` on close and, as the
  broker's last will, when the daemon dies.

QoS 1 by default; a publish returns once the broker has it. A lost connection is reconnected
with backoff (`livewatch.retry`); changes that could not be published stay pending in the event
store and are sent again, so a broker restart loses none.
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl

import aiomqtt
from pydantic import Field, SecretStr

from ..components import Options, Sink
from ..contract import Detection
from ..errors import ConfigError, TransientError
from ..hookspecs import hookimpl
from ..retry import retry

log = logging.getLogger(__name__)

TYPES = {"opened": "new", "updated": "update", "closed": "end"}


class MqttOptions(Options):
    host: str = Field("127.0.0.1", description="the broker's host name")
    port: int = Field(1883, ge=1, le=65535, description="the broker's port (8883 with TLS, usually)")
    username: str | None = Field(None, description="user name, if the broker asks for one")
    password: SecretStr | None = Field(None, description="password for `username`")
    tls: bool = Field(False, description="connect with TLS (the system's CA certificates)")
    prefix: str = Field("livewatch", description="topic prefix (Frigate's is `frigate`)")
    qos: int = Field(1, ge=0, le=2, description="QoS of every publish (1: at least once)")
    keepalive: int = Field(30, ge=5, description="seconds; the broker publishes the last will "
                           "about 1.5 keepalives after the daemon goes silent")
    timeout: float = Field(10.0, gt=0, description="seconds to connect or publish")
    retries: int = Field(5, ge=0, description="reconnects and retries of a publish, with "
                         "backoff; then the change waits in the event store for the next try")


class MqttSink(Sink):
    """Publishes event changes to an MQTT broker (Frigate-style topics)."""

    name = "mqtt"
    Options = MqttOptions

    async def start(self) -> None:
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._last: dict[str, dict] = {}  # event id -> the event as last published
        try:
            await self._connect()
        except TransientError as exc:
            raise ConfigError(f"sink {self.instance!r}: cannot reach the MQTT broker at "
                              f"{self.options.host}:{self.options.port}: {exc}") from None

    def _topic(self, *parts: str) -> str:
        return "/".join([self.options.prefix, *parts])

    async def _connect(self) -> None:
        o = self.options
        client = aiomqtt.Client(
            o.host, o.port, username=o.username,
            password=o.password.get_secret_value() if o.password else None,
            keepalive=o.keepalive, timeout=o.timeout, identifier=f"livewatch-{self.instance}",
            tls_context=ssl.create_default_context() if o.tls else None,
            will=aiomqtt.Will(self._topic("available"), b"offline", qos=1, retain=True))
        try:
            await client.__aenter__()
            await client.publish(self._topic("available"), b"online", qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            raise TransientError(f"MQTT: {exc}") from exc
        self._client = client

    async def _publish(self, messages: list[tuple[str, dict, bool]]) -> None:
        """Publish (topic, payload, retain) in order, reconnecting and retrying as needed."""
        async def attempt() -> None:
            async with self._lock:
                if self._client is None:
                    await self._connect()
                try:
                    for topic, payload, retain in messages:
                        await self._client.publish(topic, json.dumps(payload).encode(),
                                                   qos=self.options.qos, retain=retain)
                except aiomqtt.MqttError as exc:
                    await self._drop()
                    raise TransientError(f"MQTT: {exc}") from exc

        await retry(attempt, what=f"mqtt {self.instance!r}: publish", attempts=self.options.retries + 1,
                    first=0.2, longest=5.0, stop=self.stopping, logger=log)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass

    async def notify(self, change) -> None:
        event = change.event
        activity = {"label": event["label"] if event["state"] == "open" else None,
                    "probability": event["mean_probability"] if event["state"] == "open" else None,
                    "active": event["state"] == "open", "event": event["id"]}
        await self._publish([
            (self._topic("events"), {"type": TYPES[change.type], "before": self._last.get(event["id"]),
                                     "after": event}, False),
            (self._topic(event["stream"], "activity"), activity, True),
        ])
        self._last[event["id"]] = event
        if event["state"] == "closed":
            self._last.pop(event["id"], None)

    async def write(self, detection: Detection) -> None:
        """Detections are not published (event changes are)."""

    async def close(self) -> None:
        if getattr(self, "_client", None) is not None:
            try:
                await self._client.publish(self._topic("available"), b"offline", qos=1, retain=True)
            except aiomqtt.MqttError:
                pass
            await self._drop()


@hookimpl
def register_sinks(register):
    register(MqttSink)
