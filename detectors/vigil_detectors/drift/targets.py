"""The drift targets beyond the inputs: the model's outputs and the feedback labels (DESIGN §10).

A `Target` is one thing that drifts with its own reference, `DriftSuite` (so the
corrections for multiple testing run per target: inputs and outputs separately) and
tumbling/sliding window of the monitor's size: ``outputs`` (features ``prediction`` and
``proba_<class>``, from response events) and ``labels`` (feature ``label``, from feedback
truths). `fit_targets` builds them at start-up from the reference outputs
(`outputs.reference_outputs`: the model run on the reference). Their windows are in memory
only (not checkpointed, no maxAge check: they fill at the rate of responses/feedback and are
checked when full); the inputs keep the checkpointed window of `window`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from vigil_detectors.drift.outputs import LABEL, OutputEncoding, reference_outputs
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import DriftSuite, fit_statistic
from vigil_detectors.drift.window import DriftWindow


@dataclass
class Target:
    name: str  # outputs | labels
    feature_names: list[str]
    suite: DriftSuite
    window: DriftWindow
    windows: int = 0
    inline: bool = False  # run the next check on the event loop (`detector.run_check`)
    last: dict[str, Any] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        last, w = self.last, self.window
        return {"detected": bool(last.get("detected", False)), "pValue": last.get("pValue"),
                "featuresDrifted": last.get("featuresDrifted", []), "lastCheck": last.get("lastCheck"),
                "windows": self.windows, "fill": w.fill, "windowSize": w.size, "instances": w.seen,
                "threshold": last.get("threshold"), "features": last.get("features", {}),
                "tests": list(self.suite.tests), "referenceSize": int(self.suite.x_ref.shape[0])}


def fit_targets(s: DriftSettings, x_ref: np.ndarray) -> tuple[Optional[OutputEncoding], dict[str, Target]]:
    """The output (and label) targets of a monitor whose ``target`` is ``outputs`` or ``both``."""
    if s.target == "inputs":
        return None, {}
    if not s.model_url:
        raise ValueError("drift target outputs needs the model server (VIGIL_DRIFT_MODEL_URL) to score the reference")
    from vigil.auth import token_from_env

    pred, proba = reference_outputs(x_ref, s.model_url, s.model_name, token=token_from_env())
    enc = OutputEncoding.fit(pred, proba, task=s.task, classes=s.classes)
    rows = np.column_stack([enc.codes(pred, "reference outputs")] + ([proba] if proba is not None and enc.n_proba else []))

    def target(name: str, names: list[str], ref: np.ndarray, categorical: dict) -> Target:
        suite = fit_statistic(ref, p_value=s.p_value, correction=s.correction, categorical=categorical,
                              kind=s.statistic)
        return Target(name, names, suite, DriftWindow(s.window_size, ref.shape[1], s.window_mode, s.window_step))

    out = {"outputs": target("outputs", enc.names, rows, enc.categorical)}
    if s.labels:
        out["labels"] = target("labels", [LABEL], rows[:, :1], enc.categorical)
    return enc, out
