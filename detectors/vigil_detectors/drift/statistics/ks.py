"""``ks``: two-sample Kolmogorov–Smirnov test per numeric feature (alibi-detect `KSDrift`'s test).

Score: the D statistic, the largest gap between the reference's and the window's ECDFs
at any value of either sample, each ECDF ``searchsorted(sorted sample, values, 'right') / n``
exactly as `scipy.stats.ks_2samp` computes them; p-value: SciPy's asymptotic two-sided
one, ``kstwo.sf(D, round(n·m/(n+m)))`` — what ``ks_2samp(ref, x, method='asymp')`` and so
alibi-detect return.

Vectorised over features: every feature's sorted values are keyed as complex numbers
``feature + 1j·value``, which NumPy orders lexicographically, so one `np.searchsorted` over
the keys of all features answers every feature's ECDF lookups at once (exactly: both parts
are the original doubles), and one `kstwo.sf` call gives every p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import NUMERIC, Statistic, register


def keys(sorted_columns: np.ndarray) -> np.ndarray:
    """(rows, features) column-sorted values -> 1-D lexicographically sorted keys, feature by feature."""
    rows, k = sorted_columns.shape
    out = np.empty((k, rows), dtype=np.complex128)
    out.real = np.arange(k)[:, None]
    out.imag = sorted_columns.T
    return out.ravel()


def counts_at_or_below(haystack: np.ndarray, rows: int, needles: np.ndarray, per_feature: int) -> np.ndarray:
    """Per feature, how many of the `rows` haystack values are <= each needle: (features, per_feature)."""
    k = needles.size // per_feature
    hits = np.searchsorted(haystack, needles, side="right").reshape(k, per_feature)
    return hits - (np.arange(k) * rows)[:, None]


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
        ref = np.sort(np.asarray(reference, dtype=np.float64), axis=0)
        self.n_ref = ref.shape[0]
        self._keys = keys(ref)
        self._ref_cdf = counts_at_or_below(self._keys, self.n_ref, self._keys, self.n_ref) / self.n_ref

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        n = window.shape[0]
        win = keys(np.sort(np.asarray(window, dtype=np.float64), axis=0))
        at_ref = self._ref_cdf - counts_at_or_below(win, n, self._keys, self.n_ref) / n
        at_win = counts_at_or_below(self._keys, self.n_ref, win, n) / self.n_ref - \
            counts_at_or_below(win, n, win, n) / n
        high = np.maximum(at_ref.max(axis=1), at_win.max(axis=1))
        low = np.minimum(at_ref.min(axis=1), at_win.min(axis=1))
        d = np.maximum(high, np.clip(-low, 0, 1))
        m, n_ = sorted((float(self.n_ref), float(n)), reverse=True)
        p = np.clip(self._kstwo.sf(d, np.round(m * n_ / (m + n_))), 0, 1)
        return d, p
