"""Prometheus metrics for one service, labelled with its monitor and namespace.

Each service owns a `ServiceMetrics`: its own `CollectorRegistry` (so several services
can share a test process), and metric factories that put the bounded `monitor` and
`namespace` labels on every series so dashboards can filter by them even where no
Kubernetes relabelling adds them (`vigil up`), plus prometheus-client's standard
``process_*`` and ``python_gc_*`` collectors. Exposition is prometheus-client's.
"""

from __future__ import annotations

from collections.abc import Sequence

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# `*_created` series double every counter's cardinality and no dashboard of ours uses them.
prometheus_client.disable_created_metrics()

CONST_LABELS = ("monitor", "namespace")
#: Those labels when nothing sets them (outside Kubernetes: `vigil up`, tests); every service's settings default.
LOCAL_MONITOR, LOCAL_NAMESPACE = "local", "default"
#: Why a service received an instance but did not use it (`ServiceMetrics.skipped`; DESIGN §8).
SKIP_REASONS = ("missing", "unseen")


class _Bound:
    """A metric with `monitor`/`namespace` already set; `.labels(**rest)` for the others."""

    def __init__(self, metric, const: dict[str, str], extra: Sequence[str]):
        self._metric = metric
        self._const = const
        self._child = None if extra else metric.labels(**const)

    def labels(self, **labels):
        return self._metric.labels(**self._const, **labels)

    def remove(self, **labels):
        try:
            self._metric.remove(*[{**self._const, **labels}[k] for k in self._metric._labelnames])
        except KeyError:
            pass

    def __getattr__(self, item):  # inc / set / observe / time on unlabelled metrics
        if self._child is None:
            raise AttributeError(f"{self._metric._name} needs .labels(...) before .{item}")
        return getattr(self._child, item)


class ServiceMetrics:
    def __init__(self, monitor: str = LOCAL_MONITOR, namespace: str = LOCAL_NAMESPACE):
        self.registry = CollectorRegistry(auto_describe=True)
        # The standard process_* (CPU, RSS, open fds) and python_gc_* series, per service.
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.const = {"monitor": monitor, "namespace": namespace}
        #: ``vigil_instances_skipped_total{reason}``: instances received and not used (a missing value…).
        self.skipped = self.counter("vigil_instances_skipped_total",
                                    "Instances received but not used, by reason (missing: a row holding a missing "
                                    "value; unseen: a category code outside a list of unknown length).", ("reason",))
        for reason in SKIP_REASONS:
            self.skipped.labels(reason=reason)

    def _make(self, cls, name, doc, labels, **kw) -> _Bound:
        metric = cls(name, doc, [*CONST_LABELS, *labels], registry=self.registry, **kw)
        return _Bound(metric, self.const, labels)

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> _Bound:
        return self._make(Counter, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> _Bound:
        return self._make(Gauge, name, doc, labels)

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (), buckets=Histogram.DEFAULT_BUCKETS) -> _Bound:
        return self._make(Histogram, name, doc, labels, buckets=buckets)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
