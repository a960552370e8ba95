"""``hellinger``: the Hellinger distance on the reference bins, in its [0, 1] form.

Score: ``sqrt(1 - sum(sqrt(p * q)))`` (= ``||sqrt(p) - sqrt(q)||₂ / sqrt(2)``), p and q
the reference's and the window's shares of the reference bins (`bins.reference_bins`);
0 for identical shares, 1 for disjoint ones. Default threshold 0.15: stationary windows of 1,000
instances against a 3,000-row reference score about 0.04 (at most 0.07 in 300 windows), of
500 against 500 reference rows at most 0.11 — so windows of 500 and more are not flagged
(Evidently's 0.1 flags some of those).
"""

from __future__ import annotations

import numpy as np

from vigil_detectors.drift.statistics.base import register
from vigil_detectors.drift.statistics.bins import BinnedStatistic


@register
class Hellinger(BinnedStatistic):
    name = "hellinger"
    default_threshold = 0.15
    describes = "Hellinger distance (0..1) on the reference bins"
    chi2_power = 2

    def distance(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(1.0 - np.sqrt(p * q).sum(axis=-1), 0.0, 1.0))
