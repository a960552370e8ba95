"""The request logger's Prometheus metrics (DESIGN.md §4), created once per app."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.telemetry import ServiceMetrics

#: Why an event was not delivered (the `reason` label of vigil_logger_events_dropped_total).
DROP_REASONS = ("queue_full", "queue_bytes", "too_large", "retries_exhausted", "rejected", "encode_error", "shutdown",
                "refused")

ADDED_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LoggerMetrics:
    def __init__(self, monitor: str, namespace: str, sinks: Sequence[str]):
        self.service = m = ServiceMetrics(monitor, namespace)
        self.requests = m.counter("vigil_logger_requests_total", "Inference requests proxied, by status code",
                                  ("code",))
        self.sent = m.counter("vigil_logger_events_sent_total", "CloudEvents delivered to a sink", ("sink",))
        self.dropped = m.counter("vigil_logger_events_dropped_total", "CloudEvents not delivered, by reason",
                                 ("sink", "reason"))
        self.retries = m.counter("vigil_logger_event_retries_total", "Delivery attempts retried", ("sink",))
        self.queue_depth = m.gauge("vigil_logger_queue_depth", "Events waiting in a sink's queue", ("sink",))
        self.added_latency = m.histogram("vigil_logger_added_latency_seconds",
                                         "Time an inference spends in the logger, excluding the upstream call",
                                         buckets=ADDED_BUCKETS)
        self.upstream_duration = m.histogram("vigil_model_request_duration_seconds",
                                             "Duration of the upstream model server call", buckets=UPSTREAM_BUCKETS)
        self.upstream_errors = m.counter("vigil_logger_upstream_errors_total",
                                         "Upstream calls that got no answer (connect, timeout, protocol)", ("reason",))
        self.upstream_retries = m.counter("vigil_logger_upstream_retries_total",
                                          "Upstream calls retried on a fresh connection after a pooled one died")
        # vigil_events_received_total / vigil_events_rejected_total: `vigil.edge.Edge`.
        # Series that exist from the start read 0 instead of "no data".
        for sink in sinks:
            self.sent.labels(sink=sink)
            self.retries.labels(sink=sink)
            self.queue_depth.labels(sink=sink)
            for reason in DROP_REASONS:
                self.dropped.labels(sink=sink, reason=reason)

    def exposition(self) -> tuple[bytes, str]:
        return self.service.exposition()
