"""Event changes to the sinks that take them (`Sink.notify`), at least once, with id + revision.

The outbox is the event store itself: a sink that keeps events (`Sink.pending_events` and
`Sink.mark_notified`, e.g. the local store) updates them in the same transaction as the windows
behind them, and records per consumer the revision last delivered. So a change is only sent once
its windows are durable, and one not yet delivered when the daemon dies is found again on restart.

One task per consuming sink, owned by the `Notifier` (started and closed by the daemon): it
delivers what is pending when nudged (after each segment is written), at start, and when a held-
back update falls due. `opened` and `closed` go at once; `updated` at most every
`events.update_seconds` per event. A failed delivery stays pending and is tried again later.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from .capabilities import offers
from .components import Sink
from .errors import ConfigError
from .events import EventSettings
from .retry import retry

log = logging.getLogger(__name__)

#: the longest wait between two tries of a failing consumer (a sink retries on its own too)
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class EventChange:
    """What a sink's `notify` receives: `type` is opened, updated or closed; `event` is
    `livewatch.events.Event.to_dict()`. Receivers dedupe on (`id`, `revision`)."""

    type: str
    event: dict

    @property
    def id(self) -> str:
        return self.event["id"]

    @property
    def revision(self) -> int:
        return self.event["revision"]

    def to_dict(self) -> dict:
        return {"type": self.type, "id": self.id, "revision": self.revision, "event": self.event}


def change_type(event: dict, delivered: int | None) -> str:
    if event["state"] == "closed":
        return "closed"
    return "opened" if delivered is None else "updated"


class Notifier:
    def __init__(self, store: Sink, consumers: list[Sink], settings: EventSettings):
        self.store, self.consumers, self.settings = store, consumers, settings
        self._nudged = {c.instance: asyncio.Event() for c in consumers}
        self._tasks: list[asyncio.Task] = []
        self._closing = asyncio.Event()

    @classmethod
    def for_sinks(cls, sinks: list[Sink]) -> "Notifier | None":
        """A notifier when some sink takes event changes; ConfigError when none keeps events."""
        consumers = [s for s in sinks if offers(type(s), Sink, "notify")]
        if not consumers:
            return None
        able = [s for s in sinks if offers(type(s), Sink, "pending_events")]
        stores = [s for s in able if s.keeps_events]
        if not stores:
            names = ", ".join(repr(s.instance) for s in consumers)
            off = "".join(f"; sink {s.instance!r} could, but its events are turned off" for s in able)
            raise ConfigError(f"sinks {names} send event changes, which need a sink that keeps "
                              f"events (e.g. [[sinks]] type = \"local\"){off}")
        settings = stores[0].event_settings or EventSettings()
        return cls(stores[0], consumers, settings)

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(c), name=f"notify:{c.instance}")
                       for c in self.consumers]

    def nudge(self) -> None:
        """New windows are stored: look for changes."""
        for event in self._nudged.values():
            event.set()

    async def close(self, timeout: float) -> None:
        """Deliver what is pending within `timeout` seconds, then stop (what is left, or failed,
        stays pending in the store for the next start)."""
        self._closing.set()  # ends a wait between two attempts at once
        self.nudge()
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, consumer: Sink) -> None:
        nudged = self._nudged[consumer.instance]
        last_sent: dict[str, float] = {}
        while True:
            nudged.clear()
            closing = self._closing.is_set()  # set before its nudge: this pass is the last one
            try:  # a failing consumer is tried again with backoff until it takes them
                wait = await retry(lambda: self.deliver(consumer, last_sent, flush=closing),
                                   what=f"event changes to sink {consumer.instance!r}",
                                   on=Exception, attempts=1 if closing else None, first=0.5,
                                   longest=RETRY_MAX_SECONDS, stop=self._closing, logger=log)
            except Exception as exc:
                log.warning("event changes to sink %r failed (%s); they stay pending in the "
                            "store for the next start", consumer.instance, exc)
                wait = None
            if closing:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(nudged.wait(), wait)

    async def deliver(self, consumer: Sink, last_sent: dict[str, float] | None = None,
                      flush: bool = False) -> float | None:
        """Send `consumer` every pending change that is due (`flush`: every one, held-back updates
        too); returns the seconds until a held-back update falls due (None: nothing held back).
        A failure propagates; the change stays pending."""
        last_sent = {} if last_sent is None else last_sent
        due_in = None
        for event, delivered in await self.store.pending_events(consumer.instance):
            kind = change_type(event, delivered)
            if kind == "updated" and not flush:
                wait = last_sent.get(event["id"], 0.0) + self.settings.update_seconds - time.monotonic()
                if wait > 0:
                    due_in = wait if due_in is None else min(due_in, wait)
                    continue
            await consumer.notify(EventChange(kind, event))
            await self.store.mark_notified(consumer.instance, event["id"], event["revision"])
            last_sent[event["id"]] = time.monotonic()
        return due_in
