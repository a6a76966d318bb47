"""What the daemon is doing, as one object it writes and readers (the health endpoint) only read.

The daemon owns a `Status` and updates it as it goes; `livewatch.health` serves it without ever
calling back into the daemon, so neither module imports the other's behaviour.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stats:
    """Counters for what happened to the segments this run (they feed logs and metrics)."""

    received: int = 0
    classified: int = 0
    failed: int = 0  # error detections written (bad segments)
    released: int = 0  # returned to their source unacknowledged (transient failures, shutdown)
    skipped: int = 0  # skipped by the live lag policy (a detection says so; acknowledged)
    acked: int = 0
    per_stream: dict[str, int] = field(default_factory=dict)


@dataclass
class Status:
    #: starting -> ready -> stopping -> stopped
    state: str = "starting"
    #: why a running daemon cannot do its work now (the classifier fails on valid input), or None
    unavailable: str | None = None
    stats: Stats = field(default_factory=Stats)

    @property
    def ready(self) -> bool:
        """What /readyz and the ``livewatch_ready`` gauge say: started, not stopping, and the
        classifier not failing."""
        return self.state == "ready" and self.unavailable is None

    def summary(self) -> dict:
        s = self.stats
        body = {"status": self.state if self.unavailable is None or self.state != "ready"
                else "unavailable",
                "received": s.received, "classified": s.classified, "failed": s.failed,
                "released": s.released, "acknowledged": s.acked}
        if self.unavailable is not None:
            body["reason"] = self.unavailable
        return body
