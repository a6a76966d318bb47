"""The asyncio core: sources -> bounded queue -> classifier workers -> every sink -> ack.

Ownership: `Daemon.run` owns every task it starts (one per source, one per worker, one per segment
in flight) and cancels and awaits all of them before it returns, whatever happens. What happens
to one segment inside its task (classification and its fate, the sinks' writes, ack or release)
is `livewatch.delivery`'s. Blocking work never runs here: the classifier runs decoding and
inference in its own executor, and sinks do their I/O off the loop.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from .components import Classifier, Sink, Source
from .contract import Segment
from .delivery import Delivery
from .health import HealthServer, parse_listen
from .logs import current_segment
from .metrics import Metrics
from .notify import Notifier
from .settings import DaemonSettings, UiSettings
from .status import Stats, Status
from .ui import check_exposure, create_app, token_from_env

__all__ = ["Daemon", "Stats", "Status"]

log = logging.getLogger(__name__)


class Daemon:
    def __init__(
        self,
        sources: list[Source],
        classifier: Classifier,
        sinks: list[Sink],
        settings: DaemonSettings | None = None,
        ui: UiSettings | None = None,
    ):
        self.sources = sources
        self.classifier = classifier
        self.sinks = sinks
        self.settings = settings or DaemonSettings()
        #: what the daemon is doing; the health endpoint serves it (/readyz)
        self.status = Status()
        self.stats = self.status.stats
        self.metrics = Metrics()
        for component in [*sources, classifier, *sinks]:  # e.g. a source's stall gauge, size limit
            component.metrics, component.daemon_settings = self.metrics, self.settings
        self.health: HealthServer | None = None
        self.ui = ui  # the web page on the health listener (None: not served)
        #: event changes to the sinks that take them (livewatch.notify), when any does
        self.notifier = Notifier.for_sinks(sinks)
        self._queue: asyncio.Queue[tuple[Source, Segment]] = asyncio.Queue(self.settings.queue_size)
        self._stopping = asyncio.Event()
        self._in_flight: dict[asyncio.Task, tuple[Source, Segment]] = {}
        self._waiting: dict[str, int] = {}  # queued segments per stream (the live lag policy)
        self.delivery = Delivery(classifier, sinks, self.settings, self.status, self.metrics,
                                 self.notifier, self._stopping)
        self.metrics.queue_depth.set_function(self._queue.qsize)
        self.metrics.in_flight.set_function(lambda: len(self._in_flight))
        self.metrics.ready.set_function(lambda: float(self.status.ready))

    @property
    def state(self) -> str:
        """starting -> ready -> stopping -> stopped (`status.ready` also needs the classifier)."""
        return self.status.state

    @state.setter
    def state(self, value: str) -> None:
        self.status.state = value

    def _ui_app(self):
        """The web UI over the first sink that can read back what it stored, or None."""
        if self.ui is None or not self.ui.enabled:
            return None
        store = next((sink for sink in self.sinks if sink.queryable), None)
        if store is None:
            log.info("no sink can read back detections: the web UI is not served")
            return None
        token = token_from_env(self.ui.token)
        check_exposure(parse_listen(self.settings.health_listen)[0], token)
        roots = [root for source in self.sources if (root := source.media_root()) is not None]
        return create_app(store, token, self.status, media=roots)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, handle_signals: bool = True) -> Stats:
        """Run until every source is exhausted (one-shot sources) or `stop()` / a signal."""
        started = []
        if self.settings.health_listen:
            required = "health_listen" in self.settings.model_fields_set
            self.health = HealthServer(self.status, self.metrics, self.settings.health_listen,
                                       required=required, ui=self._ui_app())
            await self.health.start()  # first: /livez answers while the model loads
        try:
            # Sinks first (a missing table fails before any work), then the model, then the
            # sources, so that nothing is pulled before it can be classified and written.
            for component in [*self.sinks, self.classifier, *self.sources]:
                log.info("starting %s %r", type(component).__name__, component.instance)
                started.append(component)
                await component.start()
            self.metrics.runtime.info(self.classifier.runtime())  # backend, precision, unit
            if handle_signals:
                self._install_signal_handlers()
            if not self._stopping.is_set():
                self.state = "ready"
            if self.notifier is not None:
                self.notifier.start()  # first delivers what an earlier run left pending
            await self._serve()
        finally:
            self.state = "stopping"
            if handle_signals:
                self._remove_signal_handlers()
            if self.notifier is not None and self.notifier.started:
                await self.notifier.close(self.settings.shutdown_timeout)
            for component in reversed(started):
                try:
                    await component.close()
                except Exception:
                    log.exception("closing %r failed", component)
            if self.health is not None:
                await self.health.close()
            self.state = "stopped"
        log.info(
            "stopped: %d received, %d classified, %d error detections, %d skipped, %d released, "
            "%d acknowledged", self.stats.received, self.stats.classified, self.stats.failed,
            self.stats.skipped, self.stats.released, self.stats.acked,
        )
        return self.stats

    def stop(self) -> None:
        """Stop pulling new segments; in-flight ones get `shutdown_timeout` seconds to finish."""
        if not self._stopping.is_set():
            log.info("stopping: no new segments; waiting up to %.0fs for %d in flight",
                     self.settings.shutdown_timeout, len(self._in_flight))
            self._stopping.set()
            for component in (*self.sources, self.classifier, *self.sinks):
                stopping = getattr(component, "stopping", None)  # None: no Component.__init__
                if stopping is not None:
                    stopping.set()  # their retry waits (livewatch.retry) end at once
            if self.state == "ready":
                self.state = "stopping"

    async def _serve(self) -> None:
        source_tasks = [
            asyncio.create_task(self._run_source(s), name=f"source:{s.instance}") for s in self.sources
        ]
        workers = [
            asyncio.create_task(self._worker(), name=f"worker:{i}")
            for i in range(self.settings.workers)
        ]
        sources_done = asyncio.gather(*source_tasks)
        stopping = asyncio.create_task(self._stopping.wait(), name="stop-signal")
        try:
            await asyncio.wait({sources_done, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if sources_done.done():
                sources_done.result()  # a source that crashed stops the daemon with its error
                # One-shot sources are exhausted: finish what is queued, unless told to stop.
                joined = asyncio.create_task(self._queue.join(), name="drain")
                await asyncio.wait({joined, stopping}, return_when=asyncio.FIRST_COMPLETED)
                joined.cancel()
        finally:
            stopping.cancel()
            sources_done.cancel()  # cancels every source task
            await asyncio.gather(sources_done, *source_tasks, return_exceptions=True)
            await self._release_queued()
            await self._finish_in_flight(workers)

    async def _finish_in_flight(self, workers: list[asyncio.Task]) -> None:
        for worker in workers:
            worker.cancel()  # idle workers stop at once; busy ones are shielded below
        if self._in_flight:
            done, pending = await asyncio.wait(
                self._in_flight, timeout=self.settings.shutdown_timeout
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in pending:
                source, segment = self._in_flight.pop(task, (None, None))
                if source is not None:
                    await self.delivery.release(source, segment,
                                                "it did not finish within the shutdown timeout")
        await asyncio.gather(*workers, return_exceptions=True)

    async def _release_queued(self) -> None:
        while not self._queue.empty():
            source, segment = self._queue.get_nowait()
            self._waiting[segment.stream] = self._waiting.get(segment.stream, 1) - 1
            self._queue.task_done()
            await self.delivery.release(source, segment, "shutting down before it was classified")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    # -- the pipeline ----------------------------------------------------------------------------

    async def _run_source(self, source: Source) -> None:
        async def emit(segment: Segment) -> None:
            segment.source = segment.source or source.instance
            self.stats.received += 1
            self.metrics.received.labels(segment.stream, segment.source).inc()
            log.debug("segment %s received from %s (stream %s)", segment.uri, source.instance,
                     segment.stream)
            await self._queue.put((source, segment))
            self._waiting[segment.stream] = self._waiting.get(segment.stream, 0) + 1

        await source.run(emit)
        log.info("source %r has no more segments", source.instance)

    async def _worker(self) -> None:
        while True:
            source, segment = await self._queue.get()
            self._waiting[segment.stream] = self._waiting.get(segment.stream, 1) - 1
            # The segment's own task is shielded from the worker's cancellation, so a shutdown
            # lets it finish within the grace period instead of abandoning it half-written.
            task = asyncio.create_task(self._handle(source, segment), name=f"segment:{segment.uri}")
            self._in_flight[task] = (source, segment)
            try:
                await asyncio.shield(task)
                del self._in_flight[task]
            except asyncio.CancelledError:
                # Shutting down: _finish_in_flight waits for a task still running. The worker
                # stops either way, also when its task ended in the same instant (carrying on
                # would leave it waiting on the queue, and the shutdown with it).
                if task.done():
                    self._in_flight.pop(task, None)
                raise
            except Exception:
                self._in_flight.pop(task, None)
                log.exception("segment %s: unexpected failure; it was not acknowledged", segment.uri)
            finally:
                self._queue.task_done()

    async def _handle(self, source: Source, segment: Segment) -> None:
        current_segment.set(segment.uri)  # this task's log lines name the segment
        await self.delivery.handle(source, segment, skipped=self._skip_reason(segment))

    def _skip_reason(self, segment: Segment) -> str | None:
        """The live lag policy: skip a segment when a newer one of its stream already waits."""
        newer = self._waiting.get(segment.stream, 0)
        if self.settings.lag_policy != "live" or newer <= 0:
            return None
        return (f"skipped to stay live: {newer} newer segment(s) of stream {segment.stream!r} were "
                "already waiting (daemon.lag_policy = \"live\")")
