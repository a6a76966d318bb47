"""The daemon's Prometheus metrics, one registry per daemon (so several daemons in one process,
as in the tests, never share counters).

Names follow Prometheus' conventions: `_total` counters, `_seconds` histograms, labels for the
stream, the source and the sink. `livewatch.health` serves them at ``/metrics``.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

if TYPE_CHECKING:
    from .contract import Detection, Segment

# 10 ms .. 2 min: decoding takes tens of ms, a CPU forward pass about a second, a slow sink more.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        by_segment = ["stream", "source"]
        self.received = Counter("livewatch_segments_received", "Segments handed over by sources",
                                by_segment, registry=r)
        self.classified = Counter("livewatch_segments_classified", "Segments given a label",
                                  by_segment, registry=r)
        self.failed = Counter("livewatch_segments_failed",
                              "Segments that ended as an error detection (bad input)",
                              by_segment, registry=r)
        self.skipped = Counter("livewatch_segments_skipped",
                               "Segments skipped by the live lag policy (recorded as detections)",
                               by_segment, registry=r)
        self.released = Counter("livewatch_segments_released",
                                "Segments returned to their source unacknowledged (transient "
                                "failures, shutdown): they will be delivered again",
                                by_segment, registry=r)
        self.acked = Counter("livewatch_segments_acknowledged",
                             "Segments acknowledged after every sink wrote them", by_segment,
                             registry=r)
        self.missed = Counter("livewatch_segments_missed", "Segments a live source could not read "
                              "before they left the stream's window (recorded as gap detections)",
                              by_segment, registry=r)
        self.source_outages = Counter("livewatch_source_outages", "Times a live source lost its "
                                      "stream (it retries with backoff)", ["source"], registry=r)
        self.source_stalled = Gauge("livewatch_source_stalled", "1 while a live stream has not "
                                    "advanced for 3 target durations", by_segment, registry=r)
        self.retries = Counter("livewatch_sink_retries", "Sink writes retried after a transient "
                               "failure", ["sink"], registry=r)
        self.classifier_retries = Counter(
            "livewatch_classifier_retries", "Classifications retried after the classifier or its "
            "model failed on a valid segment (out of memory, a backend crash...)", registry=r)
        self.ready = Gauge("livewatch_ready", "1 while /readyz answers 200: started, not stopping, "
                           "and the classifier not failing", registry=r)
        self.queue_depth = Gauge("livewatch_queue_depth", "Segments waiting for a worker",
                                 registry=r)
        self.in_flight = Gauge("livewatch_segments_in_flight", "Segments being classified or "
                               "written", registry=r)
        self.lag = Gauge("livewatch_lag_seconds",
                         "How far behind the live edge the last detection of a stream was: now "
                         "minus the end of its segment (program date-time), else minus its arrival",
                         ["stream"], registry=r)
        self.decode = Histogram("livewatch_decode_seconds", "Decoding and sampling per segment",
                                registry=r, buckets=LATENCY_BUCKETS)
        self.infer = Histogram("livewatch_inference_seconds", "Preprocessing and inference per "
                               "segment", registry=r, buckets=LATENCY_BUCKETS)
        self.sink_write = Histogram("livewatch_sink_write_seconds", "One sink's write of one "
                                    "detection, retries included", ["sink"], registry=r,
                                    buckets=LATENCY_BUCKETS)
        self.latency = Histogram("livewatch_detection_latency_seconds",
                                 "From the segment's arrival to its detection being written",
                                 registry=r, buckets=LATENCY_BUCKETS)
        self.runtime = Info("livewatch_model_runtime", "What runs the classifier's model: "
                            "backend, precision, the CPU unit", registry=r)

    def record(self, segment: "Segment", detection: "Detection", outcome: str) -> None:
        """A detection was written by every sink; `outcome`: classified, failed or skipped."""
        getattr(self, outcome).labels(segment.stream, segment.source).inc()
        if detection.decode_ms is not None:
            self.decode.observe(detection.decode_ms / 1000)
        if detection.infer_ms is not None:
            self.infer.observe(detection.infer_ms / 1000)
        if detection.latency_ms is not None:
            self.latency.observe(detection.latency_ms / 1000)
        live_edge = (segment.start.timestamp() + (segment.duration or 0.0) if segment.start
                     else segment.arrived_at)
        self.lag.labels(segment.stream).set(max(0.0, time.time() - live_edge))

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
