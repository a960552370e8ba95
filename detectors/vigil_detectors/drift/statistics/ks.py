"""``ks``: two-sample Kolmogorov–Smirnov test per numeric feature (alibi-detect `KSDrift`'s test).

Score: the D statistic (largest gap between the reference's and the window's ECDFs);
p-value: SciPy's asymptotic two-sided one, ``kstwo.sf(D, round(n·m/(n+m)))`` — exactly
what ``scipy.stats.ks_2samp(ref, x, method='asymp')`` and so alibi-detect return — for all
features in one pass instead of one SciPy call per feature.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from vigil_detectors.drift.statistics.base import NUMERIC, Statistic, register
from vigil_detectors.drift.statistics.ecdf import merged_cdfs


@register
class KS(Statistic):
    name = "ks"
    accepts = frozenset({NUMERIC})
    p_value_test = True
    describes = "Kolmogorov-Smirnov D; drift when the p-value is below the corrected significance"

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence] = None):
        super().__init__(reference, bins)
        from scipy.stats import kstwo

        self._kstwo = kstwo
        self.reference = np.sort(np.asarray(reference, dtype=np.float64), axis=0)

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        _, cdf_ref, cdf_win, last = merged_cdfs(self.reference, window)
        gap = np.where(last, cdf_ref - cdf_win, 0.0)
        d = np.maximum(gap.max(axis=0), np.clip(-gap.min(axis=0), 0, 1))
        m, n = sorted((float(self.reference.shape[0]), float(window.shape[0])), reverse=True)
        p = np.clip(self._kstwo.sf(d, np.round(m * n / (m + n))), 0, 1)
        return d, p
