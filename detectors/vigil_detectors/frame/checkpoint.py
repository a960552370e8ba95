"""Checkpoint health: a detector that cannot write its state must not pretend it kept an event.

A stateful detector (drift's `WindowStore`) raises `CheckpointError` from `process` when
an event could not be written *before* it would be acknowledged; the frame answers 503
(reason ``checkpoint``) so the sender retries it. Every failed write — event log or
snapshot — is counted in ``vigil_checkpoint_errors_total`` and turns ``/readyz`` to 503
with the reason, until a later write succeeds (DESIGN §11 "Disk").
"""

from __future__ import annotations

import logging
from typing import Optional

from vigil.telemetry import ServiceMetrics

log = logging.getLogger("vigil.detector")


class CheckpointError(Exception):
    """The event could not be written to the checkpoint: it was not kept."""


class CheckpointHealth:
    def __init__(self, metrics: ServiceMetrics):
        self._errors = metrics.counter("vigil_checkpoint_errors_total",
                                       "Failed writes of the detector's checkpoint (event log or snapshot).")
        self.error: Optional[str] = None
        self.errors = 0

    def failed(self, what: str, exc: BaseException) -> None:
        self._errors.inc()
        self.errors += 1
        if self.error is None:
            log.error("checkpoint %s failed: %s (not ready until a write succeeds)", what, exc)
        self.error = f"cannot write the checkpoint ({what}): {exc}"

    def ok(self) -> None:
        if self.error is not None:
            log.info("checkpoint writes succeed again")
        self.error = None
