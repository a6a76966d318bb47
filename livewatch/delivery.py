"""One segment's way through the daemon: its fate from the classifier, its detection written to
every sink, then ack or release (DESIGN.md, delivery rules). `Daemon` owns the tasks; this owns
what happens inside one.

A segment is acknowledged to its source only after every sink wrote its detection. Every failure
has one of two fates. A segment that can never succeed (`SegmentError`: its own defect, or a
classification past `segment_timeout`) becomes an error detection and is acknowledged. Anything
else, a sink that is down or the classifier or its model failing on valid input (out of memory, a
crashed backend), is transient: retried in place with backoff (`livewatch.retry`), the daemon not
ready meanwhile, and released unacknowledged if it still fails.
"""
from __future__ import annotations

import asyncio
import logging

from .components import Classifier, Sink, Source
from .contract import Detection, Segment
from .errors import ModelError, SegmentError, TransientError
from .metrics import Metrics
from .notify import Notifier
from .retry import retry
from .settings import DaemonSettings
from .status import Status

__all__ = ["Delivery", "classify_segment"]

log = logging.getLogger("livewatch.daemon")  # the daemon's lines, under the name they always had


class Delivery:
    """Handles one segment at a time, as many at once as the daemon has workers. `stopping` is
    the daemon's: once set, retries end at once and a failing segment is released."""

    def __init__(self, classifier: Classifier, sinks: list[Sink], settings: DaemonSettings,
                 status: Status, metrics: Metrics, notifier: Notifier | None,
                 stopping: asyncio.Event):
        self.classifier, self.sinks, self.settings = classifier, sinks, settings
        self.status, self.stats, self.metrics = status, status.stats, metrics
        self.notifier = notifier
        self._stopping = stopping

    async def handle(self, source: Source, segment: Segment, skipped: str | None) -> None:
        """Classify `segment` (or, `skipped` by the lag policy, give it that error detection),
        write the detection to every sink, then ack it; release it if that cannot be done."""
        if skipped:
            detection = Detection.failed(segment, skipped)
        else:
            detection = self._over_limits(segment) or await self._classify(source, segment)
        if detection is None:
            return
        detection.with_latency_from(segment)
        try:
            await asyncio.gather(*(self._write(sink, detection) for sink in self.sinks))
        except Exception as exc:
            await self.release(source, segment, f"a sink failed: {exc}")
            return
        if self.notifier is not None:
            self.notifier.nudge()  # the windows are stored: their event changes can go
        self._count(segment, detection, skipped=bool(skipped))
        try:
            await source.ack(segment)
            self.stats.acked += 1
            self.metrics.acked.labels(segment.stream, segment.source).inc()
        except Exception:
            log.exception("segment %s: acknowledging to %s failed; it may be delivered again "
                          "(its detection is written, and a rewrite is idempotent)", segment.uri,
                          source.instance)

    async def release(self, source: Source, segment: Segment, why: str) -> None:
        """Give `segment` back to its source unacknowledged, to be delivered again."""
        self.stats.released += 1
        self.metrics.released.labels(segment.stream, segment.source or source.instance).inc()
        log.warning("segment %s: not acknowledged (%s); it will be delivered again", segment.uri, why)
        try:
            await source.release(segment)
        except Exception:
            log.exception("segment %s: releasing to %s failed", segment.uri, source.instance)

    def _over_limits(self, segment: Segment) -> Detection | None:
        limit_mb = self.settings.max_segment_mb
        if segment.size is not None and segment.size > limit_mb * 1_000_000:
            return Detection.failed(
                segment, f"segment too large: {segment.size / 1e6:.1f} MB, the limit is "
                f"{limit_mb:g} MB (daemon.max_segment_mb); it was not read")
        return None

    def _count(self, segment: Segment, detection: Detection, skipped: bool) -> None:
        outcome = "skipped" if skipped else "classified" if detection.ok else "failed"
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        self.stats.per_stream[segment.stream] = self.stats.per_stream.get(segment.stream, 0) + 1
        self.metrics.record(segment, detection, outcome)
        if skipped:
            log.info("segment %s: %s", segment.uri, detection.error)
        elif detection.ok:
            log.info("segment %s: %s (%.2f), latency %.0f ms", segment.uri, detection.label,
                     detection.probability or 0.0, detection.latency_ms or 0.0)

    async def _classify(self, source: Source, segment: Segment) -> Detection | None:
        """Classify, retrying a transient failure in place with backoff: `classifier_retries`
        times, then (or at once when the daemon stops) the segment is released. While the
        classifier fails the daemon is not ready (/readyz 503, livewatch_ready 0); the first
        classification that succeeds makes it ready again."""
        limit = self.settings.classifier_retries

        def failing(exc: BaseException) -> None:
            if self.status.unavailable is None and not self._stopping.is_set():
                log.error("classifier %r fails on valid input: the daemon is not ready until a "
                          "classification succeeds (%s)", self.classifier.instance, exc)
            self.status.unavailable = f"classifier {self.classifier.instance!r} failing: {exc}"

        def retried(attempt: int, exc: BaseException) -> None:
            failing(exc)
            self.metrics.classifier_retries.inc()

        try:
            detection = await retry(
                lambda: classify_segment(self.classifier, segment, self.settings.segment_timeout),
                what=f"segment {segment.uri}: classifier {self.classifier.instance!r}",
                attempts=None if limit is None else limit + 1,
                first=min(0.5, self.settings.classifier_retry_max_seconds),
                longest=self.settings.classifier_retry_max_seconds, stop=self._stopping,
                logger=log, on_retry=retried)
        except TransientError as exc:
            failing(exc)  # until a classification succeeds
            await self.release(source, segment, str(exc))
            return None
        if self.status.unavailable is not None:
            log.info("classifier %r works again: the daemon is ready", self.classifier.instance)
            self.status.unavailable = None
        return detection

    async def _write(self, sink: Sink, detection: Detection) -> None:
        with self.metrics.sink_write.labels(sink.instance).time():
            await self._write_with_retries(sink, detection)

    async def _write_with_retries(self, sink: Sink, detection: Detection) -> None:
        """Write, retrying transient failures with backoff and jitter: `sink_retries` times, or
        (by default) until the write succeeds or the daemon stops. Meanwhile the segment stays in
        flight: its worker takes no new one, so a sink that is down empties the workers' hands
        into a full queue and the sources stop pulling (backpressure)."""
        limit = self.settings.sink_retries

        def retried(attempt: int, exc: BaseException) -> None:
            if limit is None and attempt == 3:
                log.warning("segment %s: sink %r still fails (the segment is held; new ones "
                            "wait)", detection.uri, sink.instance)
            self.metrics.retries.labels(sink.instance).inc()

        async def write() -> None:
            try:
                await sink.write(detection)
            except TransientError:
                raise
            except Exception:
                log.exception("segment %s: sink %r failed", detection.uri, sink.instance)
                raise

        await retry(write, what=f"segment {detection.uri}: sink {sink.instance!r}",
                    attempts=None if limit is None else limit + 1,
                    first=min(0.2, self.settings.sink_retry_max_seconds),
                    longest=self.settings.sink_retry_max_seconds, stop=self._stopping,
                    logger=log, on_retry=retried)


async def classify_segment(classifier: Classifier, segment: Segment, timeout: float) -> Detection:
    """Classify one segment. A failure that can never succeed, the segment's own defect
    (`SegmentError`) or a classification past `timeout`, becomes an error detection.

    Everything else is transient and raised as TransientError (try again later): the model or
    its runtime failing on valid input (`ModelError`: out of memory, a crashed backend) and any
    other exception the classifier lets out. Raises only TransientError and CancelledError.
    """
    try:
        return await asyncio.wait_for(classifier.classify(segment), timeout)
    except SegmentError as exc:
        log.warning("segment %s: %s", segment.uri, exc)
        return Detection.failed(segment, str(exc))
    except TransientError:
        raise
    except asyncio.TimeoutError:
        log.error("segment %s: classification took longer than %.0fs", segment.uri, timeout)
        return Detection.failed(
            segment, f"classification took longer than daemon.segment_timeout={timeout:g}s"
        )
    except ModelError as exc:
        raise TransientError(f"the model failed: {exc}") from exc
    except Exception as exc:  # the classifier's runtime, or a bug: not the segment's fault
        log.exception("segment %s: classifier %r failed", segment.uri, classifier.instance)
        raise TransientError(f"classifier failed: {type(exc).__name__}: {exc}") from exc
