"""A monitor's drift check: one statistic per feature, fitted from the reference, one verdict per window.

`fit_statistic` decides each feature's type — declared categorical, *inferred* categorical
(`inferred_categorical`: the reference holds ≤ `MAX_CATEGORIES` distinct values), or
numeric — and its statistic (`base.choose`: the per-feature override, else the monitor's
default if it accepts the type, else ``ks``/``chi2``), fits each statistic once on the
columns it tests, and returns a `DriftSuite`. `DriftSuite.check(window)` scores every
group in one vectorised pass and decides:

- p-value tests (ks, chi2): corrected together — Bonferroni (threshold α/m) or
  Benjamini–Hochberg FDR — where m counts only the features tested by p-value;
- distances (psi, hellinger, jensenshannon, wasserstein): drifted when score ≥ threshold,
  the statistic's default raised for windows too small for it (`base.Statistic.thresholds`,
  at level `base.FALSE_ALARM_RATE`/m, m the distance-tested features).

The window drifted if any feature did. `DriftSuite.save` writes a directory (``drift.json``
+ ``reference.npy``) that `load_statistic` fits again; nothing here imports TensorFlow or
alibi-detect.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics import base
from vigil_detectors.drift.statistics.base import CATEGORICAL, NUMERIC
from vigil_detectors.drift.statistics.bins import BinnedStatistic, Bins, reference_bins

log = logging.getLogger("vigil.drift")

#: A feature not declared categorical is tested as categorical when its reference holds at most this many values.
MAX_CATEGORIES = 10
ARTIFACT = "drift.json"
FORMAT = "vigil-drift/v1"


@dataclass
class CheckResult:
    """The outcome of comparing one window with the reference."""

    detected: bool
    p_values: np.ndarray  # (features,) raw per-feature p-values; NaN where the statistic has none
    distances: np.ndarray  # (features,) score per feature (KS D, chi-squared, PSI, …)
    threshold: Optional[float]  # raw p-values below this drift (after the correction); None: no p-value test
    p_value: Optional[float]  # smallest p-value adjusted for the correction; None: no p-value test
    drifted: list[int] = field(default_factory=list)  # indices of the features that drifted
    tests: list[str] = field(default_factory=list)  # per feature: its statistic's name
    thresholds: Optional[np.ndarray] = None  # (features,) per feature: p-value threshold or score threshold

    @property
    def scores(self) -> np.ndarray:
        return self.distances


def adjusted_min_p(p_values: np.ndarray, correction: str) -> float:
    """The smallest p-value adjusted for the correction (Bonferroni, or Benjamini–Hochberg for FDR).

    Compared with the configured significance it gives the same answer as the batch
    decision, which makes it the one number to show for a whole window.
    """
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return 1.0
    if correction == "fdr":
        ranked = np.sort(p)
        return float(min(1.0, np.min(ranked * n / np.arange(1, n + 1))))
    return float(min(1.0, p.min() * n))


def p_threshold(p_values: np.ndarray, significance: float, correction: str) -> float:
    """The raw p-value below which a feature drifts: α/m (Bonferroni) or the Benjamini–Hochberg cut (as alibi-detect)."""
    m = p_values.size
    if correction == "fdr":
        cuts = significance * np.arange(1, m + 1) / m
        below = np.nonzero(np.sort(p_values) < cuts)[0]
        return float(cuts[below.max()]) if below.size else float(cuts[0])
    return significance / m


def inferred_categorical(x_ref: np.ndarray, declared: Optional[dict] = None) -> list[int]:
    """Features not declared categorical whose reference holds ≤ `MAX_CATEGORIES` distinct values.

    They are tested as categorical (chi-squared by default); `vigil validate` and the drift
    service's log say which.
    """
    declared = declared or {}
    x = np.asarray(x_ref)
    return [j for j in range(x.shape[1]) if j not in declared and np.unique(x[:, j]).size <= MAX_CATEGORIES]


class DriftSuite:
    """The fitted statistics of one monitor (see the module docstring)."""

    kind = "vigil"

    def __init__(self, x_ref: np.ndarray, *, p_value: float = 0.05, correction: str = "bonferroni",
                 categorical: Optional[dict[int, Optional[int]]] = None, statistic: str = "ks",
                 statistics: Optional[dict[int, str]] = None, bins: Optional[dict[int, Bins]] = None):
        """`bins`: per feature index, the bins to score binned statistics on (a baseline's histograms,
        `bins.Bins.from_json`); a feature without one — or whose bins are of the other type (numeric vs
        categorical) than the feature is tested as — gets `reference_bins` of its reference column."""
        x_ref = np.ascontiguousarray(x_ref, dtype=np.float64)
        if x_ref.ndim != 2 or x_ref.shape[0] < 2:
            raise ValueError(f"reference data must have at least 2 rows of features, got shape {list(x_ref.shape)}")
        n = x_ref.shape[1]
        self.categorical = {int(k): v for k, v in (categorical or {}).items()}
        self.overrides = {int(k): v for k, v in (statistics or {}).items()}
        for what, keys in (("categorical", self.categorical), ("statistics", self.overrides)):
            bad = sorted(i for i in keys if not 0 <= i < n)
            if bad:
                raise ValueError(f"{what} feature indices {bad} out of range for {n} features")
        base.get(statistic)
        given = {int(k): v for k, v in (bins or {}).items()}
        self.given_bins = given
        self.x_ref, self.p_val, self.correction, self.statistic = x_ref, float(p_value), correction, statistic
        self.n_features = n
        self.inferred = inferred_categorical(x_ref, self.categorical)
        self._warn_declared_counts()
        self.kinds = [CATEGORICAL if j in self.categorical or j in self.inferred else NUMERIC for j in range(n)]
        self.tests = [base.choose(self.kinds[j], statistic, self.overrides.get(j), declared=j in self.categorical)
                      for j in range(n)]
        self.groups: list[tuple[base.Statistic, np.ndarray]] = []
        for name in dict.fromkeys(self.tests):
            cols = np.array([j for j in range(n) if self.tests[j] == name])
            cls = base.get(name)
            group_bins = None
            if issubclass(cls, BinnedStatistic):
                group_bins = [self._bins(j, given) for j in cols]
            self.groups.append((cls(x_ref[:, cols], group_bins), cols))
        self.bins_from = {int(j): "baseline" if (bins or {}).get(int(j)) is not None and
                          self._bins(int(j), given) is given[int(j)] else "reference"
                          for stat, cols in self.groups if isinstance(stat, BinnedStatistic) for j in cols}
        self.p_tested = np.array([base.get(t).p_value_test for t in self.tests])
        self._thresholds: dict[int, np.ndarray] = {}  # window rows -> per-feature score thresholds

    def _bins(self, j: int, given: dict[int, Bins]) -> Bins:
        b = given.get(j)
        categorical = self.kinds[j] == CATEGORICAL
        if b is not None and b.categorical == categorical:
            return b
        if b is not None:
            log.warning("feature %d: the baseline's %s histogram does not fit a feature tested as %s; using the "
                        "reference's bins", j, "categorical" if b.categorical else "numeric", self.kinds[j])
        return reference_bins(self.x_ref[:, j], categorical)

    def score_thresholds(self, rows: int) -> np.ndarray:
        """Per feature: the distance threshold for a window of `rows` (NaN for p-value tests)."""
        if rows not in self._thresholds:
            out = np.full(self.n_features, np.nan)
            level = base.FALSE_ALARM_RATE / max(1, int((~self.p_tested).sum()))
            for stat, cols in self.groups:
                if not stat.p_value_test:
                    out[cols] = stat.thresholds(rows, level)
            self._thresholds = {rows: out, **dict(list(self._thresholds.items())[-7:])}
        return self._thresholds[rows]

    def _warn_declared_counts(self) -> None:
        for i, n in self.categorical.items():
            values = np.unique(self.x_ref[:, i])
            if n is not None and values.size > n:
                log.warning("categorical feature %d is declared with %d categories but the reference holds %d: %s",
                            i, n, values.size, values[:10].tolist())
            elif n is not None and values.size < n:
                log.warning("categorical feature %d: the reference holds %d of %d categories; the others count as "
                            "new categories when they appear", i, values.size, n)

    def check(self, window: np.ndarray) -> CheckResult:
        x = np.asarray(window, dtype=np.float64)
        scores = np.empty(self.n_features)
        p = np.full(self.n_features, np.nan)
        for stat, cols in self.groups:
            s, pv = stat.score(x[:, cols])
            scores[cols] = s
            if pv is not None:
                p[cols] = pv
        thresholds = self.score_thresholds(x.shape[0]).copy()
        drifted = np.zeros(self.n_features, dtype=bool)
        threshold = adjusted = None
        if self.p_tested.any():
            tested = p[self.p_tested]
            threshold = p_threshold(tested, self.p_val, self.correction)
            adjusted = adjusted_min_p(tested, self.correction)
            thresholds[self.p_tested] = threshold
            drifted[self.p_tested] = tested < threshold
        distance = ~self.p_tested
        drifted[distance] = scores[distance] >= thresholds[distance]
        return CheckResult(detected=bool(drifted.any()), p_values=p, distances=scores, threshold=threshold,
                           p_value=adjusted, drifted=[int(i) for i in np.nonzero(drifted)[0]],
                           tests=list(self.tests), thresholds=thresholds)

    def describe(self) -> dict:
        return {"statistic": self.statistic, "tests": list(self.tests), "referenceSize": int(self.x_ref.shape[0]),
                "correction": self.correction, "significance": self.p_val,
                "inferredCategorical": list(self.inferred),
                "binsFrom": {str(j): v for j, v in sorted(self.bins_from.items())}}

    def save(self, path: str) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "reference.npy", self.x_ref, allow_pickle=False)
        config = {"format": FORMAT, "statistic": self.statistic, "pValue": self.p_val, "correction": self.correction,
                  "categorical": {str(k): v for k, v in self.categorical.items()},
                  "statistics": {str(k): v for k, v in self.overrides.items()},
                  "bins": {str(k): b.to_json() for k, b in self.given_bins.items()}}
        (out / ARTIFACT).write_text(json.dumps(config, indent=2) + "\n")


def load_suite(path: Path, **overrides) -> DriftSuite:
    """A `DriftSuite` saved by `DriftSuite.save`; keyword arguments given (not None) replace the saved ones."""
    config = json.loads((path / ARTIFACT).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path / ARTIFACT}: not a {FORMAT} artifact (format {config.get('format')!r})")
    x_ref = np.load(path / "reference.npy", allow_pickle=False)
    args = {"p_value": config["pValue"], "correction": config["correction"], "statistic": config["statistic"],
            "categorical": {int(k): v for k, v in config.get("categorical", {}).items()},
            "statistics": {int(k): v for k, v in config.get("statistics", {}).items()},
            "bins": {int(k): Bins.from_json(v) for k, v in config.get("bins", {}).items()}}
    args.update({k: v for k, v in overrides.items() if v is not None})
    return DriftSuite(x_ref, **args)
