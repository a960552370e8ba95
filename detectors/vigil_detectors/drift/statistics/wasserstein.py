"""``wasserstein``: the 1-D Wasserstein (earth mover's) distance on the reference bins, in reference standard deviations.

Binned on the reference histogram (`bins.reference_bins`, or the baseline's) like PSI and
Hellinger, so the baseline, the report and the service share one binning and one noise
model (`bins.BinnedStatistic.noise_floor`). Each bin's mass sits at one point: an interior
bin at its midpoint, the two open outer bins half a neighbouring bin's width beyond the
outermost edges (with a single edge, one unit either side). Score:
``W1(p, q) / sd(p)`` — the Wasserstein-1 distance between the reference's shares `p` and
the window's shares `q` on those points (``sum |P_i - Q_i| * (x_{i+1} - x_i)``, P and Q
cumulative; `scipy.stats.wasserstein_distance(x, x, p, q)`), divided by the standard
deviation of the reference's shares on the same points (Evidently's "normed Wasserstein",
so one threshold fits features of any scale). Numeric features only.

Default threshold 0.3 (mass moved by 0.3 standard deviations): stationary windows of 1,000
instances against a 3,000-row reference score about 0.03, at most 0.08 in 100 windows, so
0.3 flags none; a shift of half a standard deviation scores about 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import NUMERIC, register
from vigil_detectors.drift.statistics.bins import BinnedStatistic, Bins


def points(b: Bins) -> np.ndarray:
    """Where each of `b`'s bins holds its mass (see the module docstring)."""
    e = np.asarray(b.points, dtype=np.float64)
    if e.size == 0:
        return np.zeros(1)
    if e.size == 1:
        return np.array([e[0] - 0.5, e[0] + 0.5])
    mid = (e[1:] + e[:-1]) / 2
    return np.concatenate(([e[0] - (e[1] - e[0]) / 2], mid, [e[-1] + (e[-1] - e[-2]) / 2]))


@register
class Wasserstein(BinnedStatistic):
    name = "wasserstein"
    accepts = frozenset({NUMERIC})
    default_threshold = 0.3
    describes = "Wasserstein-1 distance on the reference bins, in reference standard deviations"
    chi2_power = 2

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence[Bins]] = None):
        super().__init__(reference, bins)
        width = self.binset.width
        x = np.zeros((len(self.binset.bins), width))
        for j, b in enumerate(self.binset.bins):
            pts = points(b)
            x[j, :pts.size] = pts
            x[j, pts.size:] = pts[-1]  # padding bins: no gap, so no contribution
        self.gaps = np.diff(x, axis=1)  # (features, width - 1)
        p = self.reference_shares
        mean = (p * x).sum(axis=1, keepdims=True)
        sd = np.sqrt((p * (x - mean) ** 2).sum(axis=1))
        self.scale = np.where(sd > 0, sd, 1.0)

    def distance(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        gap = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))[..., :-1]
        return (gap * self.gaps).sum(axis=-1) / self.scale
