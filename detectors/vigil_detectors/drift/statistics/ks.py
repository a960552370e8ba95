"""``ks``: two-sample Kolmogorov–Smirnov test per numeric feature (alibi-detect `KSDrift`'s test).

Score: the D statistic, the largest gap between the reference's and the window's ECDFs
at any value of either sample, each ECDF ``searchsorted(sorted sample, values, 'right') / n``
exactly as `scipy.stats.ks_2samp` computes them; p-value: SciPy's asymptotic two-sided
one, ``kstwo.sf(D, round(n·m/(n+m)))`` — what ``ks_2samp(ref, x, method='asymp')`` and so
alibi-detect return.

Per feature, with the reference sorted once: the window is sorted, two binary searches
place its values in the reference (``left`` and ``right``), and the window's ECDF at every
reference value comes from the ``left`` positions by counting (a window value w is <= the
k-th reference value exactly when fewer than k+1 reference values are < w), so no search
runs over the 5x larger reference's values (a searchsorted of complex keys over all
features at once, the earlier way, was most of a check's time).

`kstwo.sf` is most of a check's time (SciPy's distribution machinery around a Python
``kolmogn`` per value, ~1 ms per feature), and a window's D takes few distinct values: a
gap between ECDFs of n and m values is a multiple k/L of L = lcm(n, m). P-values are kept
per (k, effective n) in a bounded cache; a hit returns `kstwo.sf` of the first D seen for
that k, which differs from this D's own by rounding at most (relative ~1e-15).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import NUMERIC, Statistic, register

#: Cached (D, effective n) -> p-value entries per statistic before the cache starts over.
P_CACHE_SIZE = 65_536


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
        self._ref = np.ascontiguousarray(ref.T)  # (features, n_ref), each row sorted
        self._ref_cdf = np.array([np.searchsorted(r, r, side="right") for r in self._ref]) / self.n_ref
        self._p_cache: dict[tuple, float] = {}

    def p_values(self, d: np.ndarray, n_win: int) -> np.ndarray:
        """``kstwo.sf(d, round(n·m/(n+m)))`` clipped to [0, 1], computed once per (k = D·L, n, m)."""
        m, n_ = sorted((float(self.n_ref), float(n_win)), reverse=True)
        n_eff = float(np.round(m * n_ / (m + n_)))
        lcm = math.lcm(self.n_ref, int(n_win))
        keys = [(round(x * lcm), lcm, n_eff) for x in d.tolist()] if lcm < 2 ** 40 else \
            [(x, 0, n_eff) for x in d.tolist()]
        cache = self._p_cache
        out = np.array([cache.get(k, np.nan) for k in keys])
        todo = np.isnan(out)
        if todo.any():
            fresh = np.clip(self._kstwo.sf(d[todo], n_eff), 0, 1)
            out[todo] = fresh
            if len(cache) > P_CACHE_SIZE:
                cache.clear()
            cache.update(zip([k for k, t in zip(keys, todo, strict=True) if t], fresh.tolist(), strict=True))
        return out

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        n, n_ref = window.shape[0], self.n_ref
        win = np.ascontiguousarray(np.sort(np.asarray(window, dtype=np.float64), axis=0).T)
        d = np.empty(win.shape[0])
        for j, (ref, ref_cdf, w) in enumerate(zip(self._ref, self._ref_cdf, win, strict=True)):
            below = np.searchsorted(ref, w, side="left")  # reference values < each window value
            win_at_ref = np.cumsum(np.bincount(below, minlength=n_ref + 1)[:n_ref])  # window values <= each ref
            at_ref = ref_cdf - win_at_ref / n
            at_win = np.searchsorted(ref, w, side="right") / n_ref - np.searchsorted(w, w, side="right") / n
            high = max(at_ref.max(), at_win.max())
            low = min(at_ref.min(), at_win.min())
            d[j] = max(high, min(max(-low, 0.0), 1.0))
        return d, self.p_values(d, n)
