"""``psi``: the population stability index on the reference bins.

Score: ``sum((q - p) * ln(q / p))`` over the bins (`bins.reference_bins`: reference deciles
for numeric features, one bin per category plus one for unseen ones), p the reference's
and q the window's share of each bin, an empty bin's share taken as `EPSILON` (as
Evidently does) so an empty bin on one side gives a large but finite term. Default
threshold 0.2, the common "significant shift" level: stationary windows of 1,000 instances
against a 3,000-row reference score about 0.01 (at most 0.03 in 300 windows), of 200 about
0.05 (at most 0.16) — so windows of 200 and more are not flagged (`bench/bench_stationarity.py`,
tests/test_drift_statistics.py).
"""

from __future__ import annotations

import numpy as np

from vigil_detectors.drift.statistics.base import register
from vigil_detectors.drift.statistics.bins import BinnedStatistic

EPSILON = 1e-4


@register
class PSI(BinnedStatistic):
    name = "psi"
    default_threshold = 0.2
    describes = "population stability index on the reference bins"

    def distance(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        p, q = np.where(p > 0, p, EPSILON), np.where(q > 0, q, EPSILON)
        return ((q - p) * np.log(q / p)).sum(axis=-1)
