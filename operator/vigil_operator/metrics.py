"""The operator's own Prometheus metrics (its own registry; exposition by prometheus-client).

- ``vigil_operator_reconciles_total{result}``: converge runs; result is ``success``,
  ``invalid`` (spec error or an object the API server rejected) or ``error`` (retried).
- ``vigil_operator_errors_total``: unexpected errors in handlers (API failures, timeouts).
- ``vigil_operator_monitors{phase}``: monitors this operator serves, by phase.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigil_operator.status import PHASES

RESULTS = ("success", "invalid", "error")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter("vigil_operator_reconciles_total", "Monitor reconciliations by result",
                                  ["result"], registry=self.registry)
        self.errors = Counter("vigil_operator_errors_total", "Unexpected errors while reconciling or polling",
                              registry=self.registry)
        self.monitors = Gauge("vigil_operator_monitors", "Monitors served by this operator, by phase", ["phase"],
                              registry=self.registry)
        for result in RESULTS:
            self.reconciles.labels(result)
        self._phases: dict[tuple[str, str], str] = {}
        self._publish()

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        self._phases[(namespace, name)] = phase
        self._publish()

    def forget(self, namespace: str, name: str) -> None:
        self._phases.pop((namespace, name), None)
        self._publish()

    def _publish(self) -> None:
        for phase in PHASES:
            self.monitors.labels(phase).set(sum(1 for p in self._phases.values() if p == phase))
