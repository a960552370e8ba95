"""Histogram bins computed from the reference at fit time, shared by the binned statistics.

`reference_bins(column, categorical)` is the one function that decides a feature's bins,
so the baseline's ``statistics.json`` histogram and the report can reuse it:

- **numeric**: the reference's deciles (`N_BINS` = 10 quantile bins, duplicate edges merged),
  open at both ends: bin i holds ``edges[i-1] <= x < edges[i]``, so values beyond the
  reference's range fall into the first or last bin. Quantile bins give every bin about a
  tenth of the reference, so no bin's share is too small to compare.
- **categorical**: one bin per value the reference holds (sorted), plus a last bin for every
  value the reference never showed (unseen categories), empty in the reference.

`Bins.from_json` reads the same bins back from a baseline's ``statistics.json`` histogram
(`vigil.baseline`), so a monitor with a baseline scores drift on exactly its bins.
`BinSet` counts a window into every feature's bins at once (vectorised over features).

**Thresholds of the binned distances** (`BinnedStatistic.noise_floor`): a small window's
shares are mostly sampling noise — with 10 bins, a stationary window of 50 rows leaves a
bin empty often enough that PSI's empty-bin term alone passes 0.2. So the threshold of a
window of n rows is the documented default raised to the score that a stationary window
of n rows exceeds with probability `level` (`base.FALSE_ALARM_RATE` / the number of
distance-tested features): estimated from `NULL_DRAWS` seeded simulated windows per
feature — the bin shares drawn from the reference's posterior (Dirichlet(reference counts
+ ½), so an empty reference bin still gets a little mass and the reference's own sampling
noise counts), then n rows multinomially into the bins, scored against the reference
shares exactly as a real window is — and extrapolated to `level` by a scaled chi-squared
(the larger of two fits to the simulated scores, squared for the square-root distances:
mean and variance matched, Satterthwaite; and the large-window limit, chi-squared on
filled bins − 1 degrees of freedom scaled to the simulated mean) with `MARGIN` headroom,
never below the largest simulated score. Computed once per window size (cached by `DriftSuite`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import CATEGORICAL, NUMERIC, Statistic

N_BINS = 10
#: Simulated stationary windows per feature behind a binned distance's noise floor.
NULL_DRAWS = 500
#: Dirichlet prior on the reference's bin shares for the simulation (Jeffreys).
PRIOR = 0.5
#: Headroom on the extrapolated noise floor: from `NULL_DRAWS` draws the fitted tail can fall short of the
#: true one by a few per cent (PSI at 200 rows: measured against 20,000 real stationary windows).
MARGIN = 1.1


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

    @classmethod
    def from_json(cls, doc: dict) -> Bins:
        """Bins from `to_json`'s shape (a baseline's ``histogram``): ``type``, ``edges``/``values``, ``counts``."""
        categorical = doc.get("type") == "categorical"
        points = np.asarray(doc["values" if categorical else "edges"], dtype=np.float64)
        counts = np.asarray(doc["counts"], dtype=np.int64)
        if points.ndim != 1 or counts.shape != (points.size + 1,) or (counts < 0).any() or counts.sum() == 0:
            raise ValueError(f"a histogram needs ascending {'values' if categorical else 'edges'} and one count per "
                             f"bin ({points.size + 1}), non-negative and not all zero; got {counts.size} counts")
        if points.size and (np.diff(points) <= 0).any():
            raise ValueError("histogram edges/values must be strictly ascending")
        return cls(categorical, points, counts)

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
    #: The simulated scores are fitted as a scaled chi-squared after raising them to this power
    #: (1 for divergences like PSI; 2 for square-root distances: Hellinger, Jensen-Shannon, Wasserstein).
    chi2_power: float = 1.0

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence[Bins]] = None):
        super().__init__(reference, bins)
        if bins is None:
            raise ValueError(f"statistic {self.name!r} needs the reference bins")
        self.binset = BinSet(bins)
        self.reference_shares = self.binset.reference / self.binset.reference.sum(axis=1, keepdims=True)
        self._posterior: Optional[np.ndarray] = None  # (NULL_DRAWS, features, width) simulated true shares

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        counts = self.binset.counts(window)
        return self.distance(self.reference_shares, counts / counts.sum(axis=1, keepdims=True)), None

    @abstractmethod
    def distance(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Distance of window shares `q` from reference shares `p` along the last axis (bins):
        `p` is (features, bins), `q` is (features, bins) or (draws, features, bins)."""

    # -- the noise floor (see the module docstring) --
    def null_scores(self, rows: int) -> np.ndarray:
        """(NULL_DRAWS, features) scores of simulated stationary windows of `rows` instances (seeded)."""
        rng = np.random.default_rng(rows)
        if self._posterior is None:
            real = np.arange(self.binset.width)[None, :] < np.array([b.size for b in self.binset.bins])[:, None]
            alpha = np.where(real, self.binset.reference + PRIOR, 0.0)  # padding bins: no mass
            g = np.random.default_rng(0).standard_gamma(np.broadcast_to(alpha, (NULL_DRAWS, *alpha.shape)))
            self._posterior = g / g.sum(axis=2, keepdims=True)
        shares = self._posterior
        last = np.array([b.size - 1 for b in self.binset.bins])[None, :]  # each feature's last real bin
        left = np.full(shares.shape[:2], rows, dtype=np.int64)
        mass = np.ones(shares.shape[:2])
        counts = np.zeros(shares.shape)
        for j in range(shares.shape[2]):  # multinomial as a chain of binomials, vectorised over draws
            prob = np.where(j >= last, 1.0, np.clip(shares[..., j] / np.maximum(mass, 1e-300), 0.0, 1.0))
            c = rng.binomial(left, prob)
            counts[..., j] = c
            left -= c
            mass -= shares[..., j]
        return self.distance(self.reference_shares, counts / rows)

    def noise_floor(self, rows: int, level: float) -> np.ndarray:
        from scipy.stats import chi2

        null = self.null_scores(rows)
        t = null ** self.chi2_power
        mean, var = t.mean(axis=0), t.var(axis=0)
        ok = (mean > 0) & (var > 0)
        # Satterthwaite: a scaled chi-squared with the simulated mean and variance (catches heavy tails) ...
        scale = np.where(ok, var / np.where(ok, 2 * mean, 1.0), 0.0)
        dof = np.where(ok, 2 * mean ** 2 / np.where(ok, var, 1.0), 1.0)
        fitted = scale * chi2.isf(level, dof)
        # ... and the large-window limit, chi-squared on (filled bins - 1) degrees of freedom scaled to the
        # simulated mean (a mean is estimated far more steadily than a variance from NULL_DRAWS draws)
        limit = np.maximum((self.binset.reference > 0).sum(axis=1) - 1, 1)
        fitted = MARGIN * np.maximum(fitted, mean / limit * chi2.isf(level, limit)) ** (1.0 / self.chi2_power)
        return np.maximum(fitted, null.max(axis=0))
