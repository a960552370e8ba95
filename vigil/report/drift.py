"""The drift part of a report: per feature, both histograms and the live check's verdict.

The verdicts are `DriftSuite.check` (or a loaded artifact's `check`) on all the current
rows as one window — exactly what the drift service computes for a window holding those
rows. Rows with a missing value are skipped, as the service skips them (`current`). Histograms use
the drift service's bins (`reference_bins`: reference deciles for numeric features, one
bin per reference value plus an "unseen" bin for categorical ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from vigil_detectors.drift.statistics.base import CATEGORICAL
from vigil_detectors.drift.statistics.bins import Bins, reference_bins
from vigil_detectors.drift.statistics.suite import inferred_categorical


@dataclass
class FeatureDrift:
    name: str
    test: str
    categorical: bool
    score: float
    threshold: Optional[float]
    p_value: Optional[float]
    drifted: bool
    bins: Bins
    current_counts: np.ndarray
    labels: Optional[list[str]] = None  # categorical: the declared values, by code

    @property
    def verdict(self) -> str:
        return "drift" if self.drifted else "ok"


@dataclass
class DriftPart:
    detected: bool
    features: list[FeatureDrift]
    p_value: Optional[float]  # smallest p-value adjusted for the correction (None: no p-value test)
    threshold: Optional[float]  # corrected raw p-value threshold
    checked_rows: int
    skipped_rows: int
    statistic: str
    correction: str
    significance: float

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]


def _kinds(check: Any, reference: np.ndarray, categorical: dict[int, Any]) -> list[bool]:
    kinds = getattr(check, "kinds", None)
    if kinds is not None:
        return [k == CATEGORICAL for k in kinds]
    inferred = set(inferred_categorical(reference, categorical))
    return [j in categorical or j in inferred for j in range(reference.shape[1])]


def _none_if_nan(x: Any) -> Optional[float]:
    return None if x is None or np.isnan(x) else float(x)


def drift_part(check: Any, settings: Any, reference: np.ndarray, rows: np.ndarray, skipped: int,
               value_lists: dict[int, list]) -> DriftPart:
    """Check the complete current `rows` against the fitted `check` (`skipped`: rows left out for a
    missing value); `value_lists`: categorical column -> declared values."""
    names = list(settings.feature_names or [f"f{j}" for j in range(reference.shape[1])])
    if rows.shape[0] < 1:
        raise ValueError(f"the current data has no complete row to check ({skipped} hold a missing value)")
    result = check.check(rows)
    categorical = _kinds(check, reference, settings.categorical_indices)
    features = []
    for j, name in enumerate(names):
        bins = reference_bins(reference[:, j], categorical[j])
        labels = None
        if categorical[j] and j in value_lists:
            values = value_lists[j]
            labels = [str(values[int(v)]) if 0 <= v < len(values) and v == int(v) else f"{v:g}" for v in bins.points]
        features.append(FeatureDrift(
            name=name, test=result.tests[j] if j < len(result.tests) else settings.statistic, categorical=categorical[j],
            score=float(result.distances[j]),
            threshold=None if result.thresholds is None else _none_if_nan(result.thresholds[j]),
            p_value=_none_if_nan(result.p_values[j]), drifted=j in result.drifted,
            bins=bins, current_counts=bins.counts(rows[:, j]), labels=labels))
    return DriftPart(detected=bool(result.detected), features=features, p_value=result.p_value,
                     threshold=result.threshold, checked_rows=int(rows.shape[0]),
                     skipped_rows=skipped, statistic=settings.statistic,
                     correction=settings.correction, significance=settings.p_value)
