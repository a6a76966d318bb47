"""Base classes for the three kinds of plugin: sources, classifiers and sinks.

A plugin class names its config `type` in `name`, declares its options as a pydantic model in
`Options`, and is registered through the hooks in `livewatch.hookspecs`. The daemon builds one
instance per config section: `cls(options, instance=...)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
import asyncio
from typing import Awaitable, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .contract import Detection, Segment


class Options(BaseModel):
    """Base for plugin options: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class Component:
    #: the `type` that selects this plugin in the config
    name: ClassVar[str] = ""
    #: one line for `livewatch plugins`
    summary: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = Options
    #: set by the daemon before `start`: its Metrics and DaemonSettings (None outside a daemon)
    metrics = None
    daemon_settings = None
    #: the `[events]` settings (`livewatch.events.EventSettings`), set when built from settings
    event_settings = None

    def __init__(self, options: BaseModel | None = None, *, instance: str | None = None):
        self.options = options if options is not None else type(self).Options()
        self.instance = instance or self.name
        #: set by the daemon when it begins to stop: pass it as `stop` to `livewatch.retry.retry`
        #: so that a wait between two attempts ends at once
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        """Open connections, load models, check that what the config names exists."""

    async def close(self) -> None:
        """Release everything `start` took; called once, also after a failed start."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instance!r}>"


Emit = Callable[[Segment], Awaitable[None]]


class Source(Component):
    """Finds new segments and hands them to the daemon.

    `run` calls `emit(segment)` for each new segment; `emit` waits while the daemon's queue is
    full, which is how backpressure reaches the source. `run` returns when the source is exhausted
    (a one-shot list) and runs until cancelled otherwise.
    """

    async def run(self, emit: Emit) -> None:
        raise NotImplementedError

    async def ack(self, segment: Segment) -> None:
        """Every sink has written this segment's detection: never deliver it again."""

    async def release(self, segment: Segment) -> None:
        """The segment failed for a transient reason: deliver it again later (default: do nothing,
        the source's own redelivery—a visibility timeout, a restart—brings it back)."""

    # Capabilities the command line looks up (`livewatch.capabilities`); None: not offered.

    @classmethod
    def for_path(cls, path: Path) -> BaseModel | None:
        """Options that make this source read the local folder `path` (``run --folder``)."""
        return None

    def media_root(self) -> Path | None:
        """The local folder this source's segment files lie in (the web page plays stored
        segments from it, and from nowhere else); None: its segments are not local files."""
        return None

    @classmethod
    def one_shot(cls, options: BaseModel) -> BaseModel | None:
        """`options` changed so that `run` returns once what exists now is delivered (``run --once``)."""
        return None


class Classifier(Component):
    """Turns a segment into a detection. Blocking work (decoding, inference) runs in executors.

    Raise `SegmentError` for a segment that can never succeed (the daemon writes an error
    detection). Anything else, `TransientError`, `ModelError` or any other exception, is
    transient: the daemon retries with backoff, is not ready meanwhile, then releases the segment.
    """

    #: how many segments this classifier can usefully work on at once
    concurrency: int = 1

    async def classify(self, segment: Segment) -> Detection:
        raise NotImplementedError

    def runtime(self) -> dict[str, str]:
        """What runs the model once started (e.g. backend, precision, unit), for ``/metrics``."""
        return {}


class Sink(Component):
    """Writes detections somewhere. `write` returns only once the detection is durable, and
    writing the same segment twice leaves one record (the daemon delivers at least once)."""

    async def write(self, detection: Detection) -> None:
        raise NotImplementedError

    # Capabilities `livewatch detections` looks up (`livewatch.capabilities`).

    #: whether `query` reads back what this sink stored
    queryable: ClassVar[bool] = False

    @classmethod
    def for_path(cls, path: Path) -> BaseModel | None:
        """Options for the store in the local file `path` (``detections --db``); None: not offered."""
        return None

    @classmethod
    def for_table(cls, table: str) -> BaseModel | None:
        """Options for reading the remote table `table` (``ui --dynamodb``); None: not offered."""
        return None

    async def query(self, query: "DetectionQuery") -> list[Detection]:
        """The stored detections `query` selects, oldest first. Called without `start`, and must
        not create a store: a missing one is a ConfigError that says so."""
        raise NotImplementedError

    async def thumbnail(self, uri: str, n: int, stream: str | None = None) -> bytes | None:
        """The JPEG the classifier made of window `n` of segment `uri` (the web page), if this
        sink keeps them; None: not kept, or not offered. `stream`: the segment's stream where the
        caller knows it, for a store keyed by stream first (a lookup instead of a search)."""
        return None

    async def query_windows(self, query: "DetectionQuery") -> list[dict]:
        """The stored windows `query` selects (``detections --windows``), oldest first, as
        JSON-ready rows; a queryable sink that keeps no windows says so with a ConfigError."""
        from .errors import ConfigError

        raise ConfigError(f"sink {self.name!r} keeps no window timeline")

    async def query_events(self, query: "DetectionQuery") -> list[dict]:
        """The stored events (``livewatch events``) overlapping [since, until), oldest first, as
        `livewatch.events.Event.to_dict()` rows; a queryable sink that keeps none says so."""
        from .errors import ConfigError

        raise ConfigError(f"sink {self.name!r} keeps no events")

    # Event changes (`livewatch.notify`): a sink that takes them overrides `notify`; one that
    # keeps events, and so is the outbox they come from, overrides the other two.

    #: whether this instance keeps events, where its class can (`pending_events`): False when an
    #: option turned them off, and it is then no outbox
    keeps_events: bool = True

    async def notify(self, change) -> None:
        """An event opened, updated or closed (`livewatch.notify.EventChange`). Delivered at least
        once: receivers dedupe on the event's id and revision. Return once it is delivered (or
        refused for good, logged); raise to have it delivered again later."""
        raise NotImplementedError

    async def pending_events(self, consumer: str) -> list[tuple[dict, int | None]]:
        """(event, revision last delivered to `consumer` or None) for each event whose current
        revision `consumer` has not had, oldest first."""
        raise NotImplementedError

    async def mark_notified(self, consumer: str, event_id: str, revision: int) -> None:
        """`consumer` has the event `event_id` at `revision` (durably recorded)."""
        raise NotImplementedError


@dataclass(frozen=True)
class DetectionQuery:
    """What ``livewatch detections`` asks a queryable sink for; `limit` keeps the newest."""

    stream: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    errors_only: bool = False
    limit: int | None = None
    label: str | None = None  # ``livewatch events --label``
