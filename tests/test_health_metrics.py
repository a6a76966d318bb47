"""What the README says about /livez, /readyz and /metrics, checked by value: a stalled loop fails
/livez, the default port taken is tolerated, an explicit unbindable address is not, and every
documented metric counts what happened (driven with livewatch.testing's doubles)."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from livewatch.components import Classifier
from livewatch.contract import Detection
from livewatch.daemon import Daemon
from livewatch.errors import ConfigError, TransientError
from livewatch.settings import DaemonSettings
from livewatch.testing import ListSource, RecordingSink, fake_segment

DECODE_MS, INFER_MS = 120.0, 40.0


class ScriptedClassifier(Classifier):
    """`gate`: waits (in the executor) until the test opens `gate`; `flaky`: TransientError once;
    `stall`: blocks the event loop itself for `stall_seconds` (a bug the health check must show);
    anything else: labelled, with DECODE_MS / INFER_MS timings."""

    name = "scripted"

    def __init__(self, stall_seconds: float = 0.0):
        super().__init__()
        self.gate, self.entered = threading.Event(), asyncio.Event()
        self.stalling = threading.Event()
        self.stall_seconds, self.flaky_seen = stall_seconds, set()

    async def classify(self, segment):
        data = segment.open().read().decode()
        if data == "gate":
            self.entered.set()
            assert await asyncio.to_thread(self.gate.wait, 30), "the test never opened the gate"
        if data == "stall":
            self.stalling.set()
            time.sleep(self.stall_seconds)  # on the loop, on purpose
        if data == "flaky" and segment.uri not in self.flaky_seen:
            self.flaky_seen.add(segment.uri)
            raise TransientError("model server busy")
        return Detection.for_segment(segment, label=data, probability=1.0, decode_ms=DECODE_MS,
                                     infer_ms=INFER_MS)


class FirstThenRest(ListSource):
    """Emits its first segment, waits for `go`, then the rest (so the first is in flight alone)."""

    def __init__(self, items, go: asyncio.Event, **options):
        super().__init__(items, hold_open=True, **options)
        self.go = go

    async def run(self, emit):
        first, *rest = self.segments
        await emit(first)
        self.emitted.append(first.uri)
        await self.go.wait()
        for segment in rest:
            await emit(segment)
            self.emitted.append(segment.uri)
        await asyncio.Event().wait()


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    status, text = get(url + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def until(condition, timeout: float = 20.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_metric_values_count_what_happened():
    now = datetime.now(timezone.utc)
    cam = [fake_segment(data, uri=f"mem://cam/{i}", stream="cam", sequence=i,
                        start=now - timedelta(seconds=100 - 2 * i), duration=2.0)
           for i, data in enumerate([b"gate", b"a", b"b"])]
    other = fake_segment(b"flaky", uri="mem://other/0", stream="other", sequence=0)
    classifier = ScriptedClassifier()
    source = FirstThenRest([cam[0], other, cam[1], cam[2]], classifier.entered, instance="feed")
    sink = RecordingSink()
    sink.fail(1, TransientError("throttled"))  # the first write is retried once
    daemon = Daemon([source], classifier, [sink], DaemonSettings(
        health_listen="127.0.0.1:0", workers=1, queue_size=4, lag_policy="live",
        sink_retries=3, sink_retry_max_seconds=0.05,
        classifier_retries=0))  # a transient classification failure goes back at once
    task = asyncio.create_task(daemon.run(handle_signals=False))
    try:
        await asyncio.wait_for(classifier.entered.wait(), 20)
        await until(lambda: len(source.emitted) == 4, what="three segments queued")
        url = daemon.health.url
        during = await asyncio.to_thread(metrics, url)
        assert during[("livewatch_segments_in_flight", ())] == 1
        assert during[("livewatch_queue_depth", ())] == 3
        classifier.gate.set()
        await until(lambda: len(source.acked) == 3 and source.released, what="all four handled")
        after = await asyncio.to_thread(metrics, url)
    finally:
        classifier.gate.set()
        daemon.stop()
        await asyncio.wait_for(task, 20)

    def count(name, **labels):
        return after.get((name, tuple(sorted(labels.items()))), 0.0)

    feed_cam, feed_other = {"stream": "cam", "source": "feed"}, {"stream": "other", "source": "feed"}
    assert count("livewatch_segments_received_total", **feed_cam) == 3
    assert count("livewatch_segments_classified_total", **feed_cam) == 2  # cam/0 and cam/2
    assert count("livewatch_segments_skipped_total", **feed_cam) == 1  # cam/1: cam/2 waited
    assert count("livewatch_segments_released_total", **feed_other) == 1  # the transient failure
    assert count("livewatch_segments_acknowledged_total", **feed_cam) == 3
    assert count("livewatch_segments_in_flight") == 0 and count("livewatch_queue_depth") == 0
    assert count("livewatch_sink_retries_total", sink="recording") == 1
    # decode and inference: one observation per classified segment, in the right bucket
    assert count("livewatch_decode_seconds_count") == 2
    assert count("livewatch_decode_seconds_sum") == pytest.approx(2 * DECODE_MS / 1000)
    assert count("livewatch_decode_seconds_bucket", le="0.1") == 0
    assert count("livewatch_decode_seconds_bucket", le="0.25") == 2
    assert count("livewatch_inference_seconds_sum") == pytest.approx(2 * INFER_MS / 1000)
    assert count("livewatch_inference_seconds_bucket", le="0.025") == 0
    assert count("livewatch_inference_seconds_bucket", le="0.05") == 2
    # latency: every written detection (the skipped one too), each at least the time it waited
    assert count("livewatch_detection_latency_seconds_count") == 3
    assert count("livewatch_detection_latency_seconds_sum") > 0
    # lag: the last cam detection's segment ended 100 - 2*2 - 2 = 94 s before it was scraped
    lag = count("livewatch_lag_seconds", stream="cam")
    elapsed = (datetime.now(timezone.utc) - now).total_seconds()
    assert 94 <= lag <= 94 + elapsed
    assert [d.label for d in sink.detections] == ["gate", None, "b"]  # cam/1 skipped, recorded


async def test_livez_fails_while_the_loop_is_stalled():
    classifier = ScriptedClassifier(stall_seconds=4.0)
    source = ListSource([b"gate", b"stall"], hold_open=True)
    daemon = Daemon([source], classifier, [RecordingSink()],
                    DaemonSettings(health_listen="127.0.0.1:0", workers=1))
    task = asyncio.create_task(daemon.run(handle_signals=False))
    outcome: dict = {}
    try:
        await asyncio.wait_for(classifier.entered.wait(), 20)
        url = daemon.health.url
        assert (await asyncio.to_thread(get, url + "/livez"))[0] == 200  # a turning loop answers
        def probe():  # a liveness probe from outside, with its own timeout, while the loop stalls
            if not classifier.stalling.wait(20):
                return
            try:
                outcome["status"] = get(url + "/livez", timeout=1.5)[0]
            except OSError as exc:
                outcome["error"] = exc
        prober = threading.Thread(target=probe)
        prober.start()
        classifier.gate.set()  # the next segment, "stall", blocks the loop for 4 s
        await asyncio.to_thread(prober.join, 20)
        assert classifier.stalling.is_set(), "the loop never stalled"
        assert "error" in outcome, f"/livez answered {outcome} while the loop was stalled"
        await until(lambda: len(source.acked) == 2, what="the stall to end")
        assert (await asyncio.to_thread(get, url + "/livez"))[0] == 200  # alive again
    finally:
        classifier.gate.set()
        daemon.stop()
        await asyncio.wait_for(task, 20)


async def test_the_default_port_taken_runs_without_the_endpoint(caplog):
    default = DaemonSettings().health_listen
    host, port = default.rsplit(":", 1)
    blocker = socket.socket()
    try:
        blocker.bind((host, int(port)))
        blocker.listen()
    except OSError:
        pass  # something else holds it already: the same situation
    try:
        source, sink = ListSource([b"a"]), RecordingSink()
        with caplog.at_level(logging.WARNING):
            await asyncio.wait_for(Daemon([source], ScriptedClassifier(), [sink], DaemonSettings())
                                   .run(handle_signals=False), 30)
    finally:
        blocker.close()
    assert source.acked == ["mem://0"]  # it ran
    assert f"cannot serve health and metrics on {host}:{port}" in caplog.text
    assert "running without it" in caplog.text


@pytest.mark.parametrize("listen", ["192.0.2.1:9108", "127.0.0.1:{taken}"])
async def test_an_explicit_address_that_cannot_be_bound_stops_the_daemon(listen):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        listen = listen.format(taken=blocker.getsockname()[1])
        sink = RecordingSink()
        daemon = Daemon([ListSource([b"a"])], ScriptedClassifier(), [sink],
                        DaemonSettings(health_listen=listen))
        with pytest.raises(ConfigError, match=f"cannot serve health and metrics on {listen}"):
            await asyncio.wait_for(daemon.run(handle_signals=False), 30)
    assert sink.detections == [] and not sink.started  # nothing ran
