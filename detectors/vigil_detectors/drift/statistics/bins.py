"""Histogram bins computed from the reference at fit time, shared by the binned statistics.

`reference_bins(column, categorical)` is the one function that decides a feature's bins,
so the baseline's ``statistics.json`` histogram and the report can reuse it:

- **numeric**: the reference's deciles (`N_BINS` = 10 quantile bins, duplicate edges merged),
  open at both ends: bin i holds ``edges[i-1] <= x < edges[i]``, so values beyond the
  reference's range fall into the first or last bin. Quantile bins give every bin about a
  tenth of the reference, so no bin's share is too small to compare.
- **categorical**: one bin per value the reference holds (sorted), plus a last bin for every
  value the reference never showed (unseen categories), empty in the reference.

`BinSet` counts a window into every feature's bins at once (vectorised over features).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import CATEGORICAL, NUMERIC, Statistic

N_BINS = 10


@dataclass(frozen=True)
class Bins:
    categorical: bool
    #: numeric: interior edges (ascending); categorical: the reference's values (ascending).
    points: np.ndarray
    #: reference count per bin (numeric: len(points)+1 bins; categorical: one per value + unseen).
    reference_counts: np.ndarray

    @property
    def size(self) -> int:
        return len(self.points) + 1

    def index(self, x: np.ndarray) -> np.ndarray:
        """Bin index of each value of `x`."""
        if not self.categorical:
            return np.searchsorted(self.points, x, side="right")
        pos = np.searchsorted(self.points, x).clip(max=len(self.points) - 1)
        return np.where(self.points[pos] == x, pos, len(self.points))

    def counts(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.index(np.asarray(x, dtype=np.float64)), minlength=self.size)

    def to_json(self) -> dict:
        key = "values" if self.categorical else "edges"
        return {"type": "categorical" if self.categorical else "numeric", key: self.points.tolist(),
                "counts": self.reference_counts.tolist()}


def reference_bins(column: np.ndarray, categorical: bool, n_bins: int = N_BINS) -> Bins:
    """The bins of one feature, from its reference values (see the module docstring)."""
    col = np.asarray(column, dtype=np.float64)
    if categorical:
        values, counts = np.unique(col, return_counts=True)
        return Bins(True, values, np.append(counts, 0))
    edges = np.unique(np.quantile(col, np.arange(1, n_bins) / n_bins))
    empty = Bins(False, edges, np.zeros(len(edges) + 1, dtype=np.int64))
    return Bins(False, edges, empty.counts(col))


class BinSet:
    """The bins of several features, padded to one width so a window is counted in one pass."""

    def __init__(self, bins: Sequence[Bins]):
        self.bins = list(bins)
        self.width = max(b.size for b in self.bins)
        k = len(self.bins)
        self.categorical = np.array([b.categorical for b in self.bins])
        self._points = np.full((k, self.width - 1), np.nan)
        for j, b in enumerate(self.bins):
            self._points[j, :len(b.points)] = b.points
        self._n_points = np.array([len(b.points) for b in self.bins])
        self.reference = np.zeros((k, self.width))
        for j, b in enumerate(self.bins):
            self.reference[j, :b.size] = b.reference_counts

    def counts(self, window: np.ndarray) -> np.ndarray:
        """(features, width) bin counts of a (rows, features) window; padding bins stay 0."""
        x = np.asarray(window, dtype=np.float64)
        rows, k = x.shape
        pts = self._points[None, :, :]  # (1, k, P); NaN padding compares False
        numeric = (x[:, :, None] >= pts).sum(axis=2)  # edges at or below the value = bin index
        equal = x[:, :, None] == pts
        found = equal.any(axis=2)
        categorical = np.where(found, equal.argmax(axis=2), self._n_points[None, :])
        idx = np.where(self.categorical[None, :], categorical, numeric)
        flat = idx + (np.arange(k) * self.width)[None, :]
        return np.bincount(flat.ravel(), minlength=k * self.width).reshape(k, self.width).astype(np.float64)


class BinnedStatistic(Statistic):
    """A distance between the reference's and the window's shares of the reference bins."""

    accepts = frozenset({NUMERIC, CATEGORICAL})

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence[Bins]] = None):
        super().__init__(reference, bins)
        if bins is None:
            raise ValueError(f"statistic {self.name!r} needs the reference bins")
        self.binset = BinSet(bins)
        self.reference_shares = self.binset.reference / self.binset.reference.sum(axis=1, keepdims=True)

    def noise_floor(self, rows: int, level: float) -> np.ndarray:
        """From the chi-squared limit: for a stationary window, ``sum((q-p)^2/p) ~ chi2(k-1) (1/n + 1/N)``
        (k the bins the reference fills, n and N the window and reference sizes); `from_chi2`
        maps that to the statistic."""
        from scipy.stats import chi2

        filled = (self.binset.reference > 0).sum(axis=1)
        n_ref = self.binset.reference.sum(axis=1)
        x = chi2.isf(level, np.maximum(filled - 1, 1)) * (1.0 / rows + 1.0 / n_ref)
        return self.from_chi2(x)

    def from_chi2(self, x: np.ndarray) -> np.ndarray:
        """The statistic's value at a chi-squared distance ``sum((q-p)^2/p)`` of `x` (small-distance limit)."""
        return np.zeros_like(x)

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        counts = self.binset.counts(window)
        return self.distance(self.reference_shares, counts / counts.sum(axis=1, keepdims=True)), None

    @abstractmethod
    def distance(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Per feature (row) distance of window shares `q` from reference shares `p`, shape (features, bins)."""
