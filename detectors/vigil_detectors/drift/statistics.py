"""The drift statistic: the pluggable part of the drift service that compares a window to the reference.

A `DriftStatistic` is fitted from reference data (`fit_statistic`) or loaded from a saved
artifact (`load_statistic`), and answers `check(window) -> CheckResult`: per-feature
p-values and distances, the per-feature threshold after the multiple-testing correction,
and whether the window drifted. The service knows nothing else about the test, so other
statistics (PSI, Hellinger, Wasserstein, drift of the model's predictions) can be added
by implementing this interface and registering a factory in `STATISTICS`.

The one implementation today, `AlibiUnivariate`, wraps alibi-detect's univariate
detectors: `KSDrift` (Kolmogorov–Smirnov per feature) or, when features are declared
categorical, `TabularDrift` (KS for numeric features, chi-squared for categorical ones),
both with Bonferroni or FDR correction. The tests and their saving are alibi-detect's
(`alibi_detect.saving.save_detector` / `load_detector`); nothing here re-implements them.

Importing alibi-detect imports TensorFlow (its package ``__init__`` imports every
backend, even for `alibi_detect.cd.ks`), about 6 s: it happens lazily, on the first fit
or load, which the service runs in a worker thread at start-up.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

log = logging.getLogger("vigil.drift")


@dataclass
class CheckResult:
    """The outcome of comparing one window with the reference."""

    detected: bool
    p_values: np.ndarray  # (features,) raw per-feature p-values
    distances: np.ndarray  # (features,) test statistic per feature (KS D, chi-squared)
    threshold: float  # raw p-values below this are drift (after the correction)
    p_value: float  # the smallest p-value adjusted for the correction; detected iff p_value < significance
    drifted: list[int] = field(default_factory=list)  # indices of the features that drifted
    tests: list[str] = field(default_factory=list)  # per feature: "ks" | "chi2"


class DriftStatistic(ABC):
    """What the drift service needs of a statistic."""

    #: short name of the statistic ("ks", "tabular", …)
    kind: str
    n_features: int

    @abstractmethod
    def check(self, window: np.ndarray) -> CheckResult:
        """Compare a (rows, features) window with the reference."""

    @abstractmethod
    def save(self, path: str) -> None:
        """Write the fitted statistic so `load_statistic(path)` gives it back."""

    @abstractmethod
    def describe(self) -> dict:
        """Static facts for /status (test per feature, reference size, correction …)."""


def _import_alibi():
    # alibi-detect imports TensorFlow; keep its start-up quiet and on Keras 2 like the other detectors.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import alibi_detect.cd as cd
    import alibi_detect.saving as saving
    from alibi_detect.cd.base import BaseUnivariateDrift

    return cd, saving, BaseUnivariateDrift


def adjusted_min_p(p_values: np.ndarray, correction: str) -> float:
    """The smallest p-value adjusted for the correction (Bonferroni, or Benjamini–Hochberg for FDR).

    Compared with the configured significance it gives the same answer as alibi-detect's
    batch decision, which makes it the one number to show for a whole window.
    """
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return 1.0
    if correction == "fdr":
        ranked = np.sort(p)
        return float(min(1.0, np.min(ranked * n / np.arange(1, n + 1))))
    return float(min(1.0, p.min() * n))


class AlibiUnivariate(DriftStatistic):
    """An alibi-detect univariate drift detector (KSDrift, TabularDrift, …) as a `DriftStatistic`."""

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

    @property
    def p_val(self) -> float:
        return float(self.detector.p_val)

    @property
    def correction(self) -> str:
        return str(self.detector.correction)

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
                           p_value=adjusted_min_p(p, self.correction),
                           drifted=drifted, tests=list(self.tests))

    def save(self, path: str) -> None:
        _, saving, _ = _import_alibi()
        saving.save_detector(self.detector, path)

    def describe(self) -> dict:
        return {"statistic": self.kind, "tests": list(self.tests), "referenceSize": int(len(self.detector.x_ref)),
                "correction": self.correction, "significance": self.p_val}


def fit_statistic(x_ref: np.ndarray, *, p_value: float = 0.05, correction: str = "bonferroni",
                  categorical: Optional[dict[int, Optional[int]]] = None, kind: str = "ks") -> DriftStatistic:
    """Fit the statistic `kind` (see `STATISTICS`) from reference data."""
    try:
        factory = STATISTICS[kind]
    except KeyError:
        raise ValueError(f"unknown drift statistic {kind!r}; one of {', '.join(STATISTICS)}") from None
    return factory(np.asarray(x_ref, dtype=np.float64), p_value, correction, dict(categorical or {}))


def _fit_ks(x_ref: np.ndarray, p_value: float, correction: str, categorical: dict[int, Optional[int]]):
    cd, _, _ = _import_alibi()
    if x_ref.ndim != 2 or x_ref.shape[0] < 2:
        raise ValueError(f"reference data must have at least 2 rows of features, got shape {list(x_ref.shape)}")
    n_features = x_ref.shape[1]
    bad = sorted(i for i in categorical if not 0 <= i < n_features)
    if bad:
        raise ValueError(f"categorical feature indices {bad} out of range for {n_features} features")
    if not categorical:
        return AlibiUnivariate(cd.KSDrift(x_ref, p_val=p_value, correction=correction))
    for i, n in categorical.items():
        values = np.unique(x_ref[:, i])
        if n is not None and values.size > n:
            log.warning("categorical feature %d is declared with %d categories but the reference holds %d: %s",
                        i, n, values.size, values[:10].tolist())
        elif n is not None and values.size < n:
            log.warning("categorical feature %d: the reference holds %d of %d categories; the others count as "
                        "new categories when they appear", i, values.size, n)
    # Categories are taken from the reference (None): a category absent from both the reference and a
    # window would otherwise give chi-squared an all-zero column and fail the check.
    cats = {int(i): None for i in categorical}
    return AlibiUnivariate(cd.TabularDrift(x_ref, p_val=p_value, categories_per_feature=cats, correction=correction))


#: kind -> factory(x_ref, p_value, correction, categorical) -> DriftStatistic
STATISTICS: dict[str, Callable[..., DriftStatistic]] = {"ks": _fit_ks}


def load_statistic(path: str, *, p_value: Optional[float] = None, correction: Optional[str] = None) -> DriftStatistic:
    """A statistic saved with `DriftStatistic.save` or any alibi-detect univariate drift detector directory."""
    _, saving, base = _import_alibi()
    if not os.path.exists(path):
        raise FileNotFoundError(f"drift artifact {path} not found")
    detector = saving.load_detector(path)
    if not isinstance(detector, base):
        raise ValueError(f"drift artifact {path} holds a {type(detector).__name__}; the drift service needs a "
                         "univariate alibi-detect drift detector (KSDrift, TabularDrift, ChiSquareDrift, CVMDrift)")
    return AlibiUnivariate(detector, p_value=p_value, correction=correction)
