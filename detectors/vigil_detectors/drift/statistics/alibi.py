"""A saved alibi-detect univariate drift detector (KSDrift, TabularDrift, ChiSquareDrift, CVMDrift, …) as the drift check.

Only for ``storageUri`` artifacts written by `alibi_detect.saving.save_detector` (e.g. a
detector made for Seldon's alibi-detect server): its own `predict` runs each window, with
the monitor's significance and correction. Importing alibi-detect imports TensorFlow
(its package ``__init__`` imports every backend), about 6 s and 600 MB: it happens here,
on this path only, never for a monitor fitted from reference data.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.suite import CheckResult, adjusted_min_p

log = logging.getLogger("vigil.drift")


def _import_alibi():
    # alibi-detect imports TensorFlow; keep its start-up quiet and on Keras 2 like the other detectors.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import alibi_detect.saving as saving
    from alibi_detect.cd.base import BaseUnivariateDrift

    return saving, BaseUnivariateDrift


class AlibiUnivariate:
    """An alibi-detect univariate drift detector behind the drift check's interface."""

    def __init__(self, detector, p_value: Optional[float] = None, correction: Optional[str] = None):
        self.detector = detector
        # The monitor's significance and correction win over what an artifact was saved with.
        if p_value is not None and detector.p_val != p_value:
            log.info("drift artifact p_val %s overridden by the monitor's %s", detector.p_val, p_value)
            detector.p_val = p_value
        if correction is not None and detector.correction != correction:
            log.info("drift artifact correction %s overridden by the monitor's %s", detector.correction, correction)
            detector.correction = correction
        self.n_features = int(detector.n_features)
        self.kind = type(detector).__name__
        cat_vars = set(getattr(detector, "cat_vars", []) or [])
        self.tests = ["chi2" if f in cat_vars else "ks" for f in range(self.n_features)]
        if self.kind == "ChiSquareDrift":
            self.tests = ["chi2"] * self.n_features
        elif self.kind == "CVMDrift":
            self.tests = ["cvm"] * self.n_features

    def check(self, window: np.ndarray) -> CheckResult:
        out = self.detector.predict(window, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        p = np.asarray(out["p_val"], dtype=np.float64).reshape(-1)
        dist = np.asarray(out["distance"], dtype=np.float64).reshape(-1)
        threshold = out["threshold"]
        detected = bool(out["is_drift"])
        if np.ndim(threshold):  # FDR with nothing significant returns every candidate threshold
            threshold = float(np.min(threshold))
        threshold = float(threshold)
        drifted = [int(i) for i in np.nonzero(p < threshold)[0]] if detected else []
        return CheckResult(detected=detected, p_values=p, distances=dist, threshold=threshold,
                           p_value=adjusted_min_p(p, str(self.detector.correction)), drifted=drifted,
                           tests=list(self.tests), thresholds=np.full(self.n_features, threshold))

    def save(self, path: str) -> None:
        saving, _ = _import_alibi()
        saving.save_detector(self.detector, path)

    def describe(self) -> dict:
        return {"statistic": self.kind, "tests": list(self.tests), "referenceSize": int(len(self.detector.x_ref)),
                "correction": str(self.detector.correction), "significance": float(self.detector.p_val)}


def load_alibi(path: str, *, p_value: Optional[float] = None, correction: Optional[str] = None) -> AlibiUnivariate:
    saving, univariate = _import_alibi()
    detector = saving.load_detector(path)
    if not isinstance(detector, univariate):
        raise ValueError(f"drift artifact {path} holds a {type(detector).__name__}; the drift service needs a "
                         "univariate alibi-detect drift detector (KSDrift, TabularDrift, ChiSquareDrift, CVMDrift)")
    return AlibiUnivariate(detector, p_value=p_value, correction=correction)
