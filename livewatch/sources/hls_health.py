"""How a live stream is doing: outages (when it became unreachable, for how long, counted) and
stalls (the playlist not moving for 3 target durations), logged once per change and exported in
the daemon's metrics when the source runs in one."""
from __future__ import annotations

import logging
import time

from .hls_playlist import MediaPlaylist

log = logging.getLogger("livewatch.sources.hls")

STALL_TARGETS = 3  # a playlist unchanged for this many target durations is stalled


class StreamHealth:
    def __init__(self, instance: str, stream: str, metrics=None):
        self.instance, self.stream, self.metrics = instance, stream, metrics
        self.outage_since: float | None = None  # monotonic, while unreachable
        self.outage_began: float | None = None  # wall clock, of the last outage
        self.stalled = False
        self._seen: tuple | None = None
        self._changed_at = time.monotonic()

    def retrying(self, attempt: int, wait: float, error: BaseException) -> None:
        """A try failed (tenacity's before_sleep): the first one opens an outage."""
        if self.outage_since is None:
            self.outage_since, self.outage_began = time.monotonic(), time.time()
            if self.metrics is not None:
                self.metrics.source_outages.labels(self.instance).inc()
        log.warning("hls source %r: %s; try %d failed, next in %.1fs", self.instance, error, attempt, wait)

    def reachable(self) -> None:
        if self.outage_since is not None:
            log.warning("hls source %r: reachable again after %.1fs", self.instance,
                        time.monotonic() - self.outage_since)
            self.outage_since = None

    def changed(self, playlist: MediaPlaylist) -> bool:
        """Whether the playlist moved since the last load (RFC 8216's reload interval needs it)."""
        seen = (playlist.media_sequence, playlist.last_sequence, playlist.ended)
        if seen == self._seen:
            return False
        self._seen, self._changed_at = seen, time.monotonic()
        return True

    def check_stall(self, playlist: MediaPlaylist) -> None:
        still = time.monotonic() - self._changed_at
        stalled = not playlist.ended and still >= STALL_TARGETS * playlist.target_duration
        if stalled and not self.stalled:
            log.warning("hls source %r: stalled: the playlist has not changed for %.0fs (%d target "
                        "durations)", self.instance, still, STALL_TARGETS)
        elif self.stalled and not stalled:
            log.warning("hls source %r: the playlist moves again", self.instance)
        self.stalled = stalled
        if self.metrics is not None:
            self.metrics.source_stalled.labels(self.stream, self.instance).set(int(stalled))
