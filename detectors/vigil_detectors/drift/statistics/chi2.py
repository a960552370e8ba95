"""``chi2``: Pearson's chi-squared test of homogeneity per categorical feature (alibi-detect `TabularDrift`'s test).

Each feature's 2×k contingency table holds the reference's and the window's count of every
category in either — the reference's categories, then each value only the window holds as
a column of its own, as alibi-detect builds it — and is tested as
`scipy.stats.chi2_contingency` does (Yates' continuity correction for 2×2 tables; a table of
one category is no evidence: statistic 0, p-value 1). Score: the chi-squared statistic.
The tables of all features are padded to one width and tested in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from vigil_detectors.drift.statistics.base import CATEGORICAL, Statistic, register


@register
class ChiSquared(Statistic):
    name = "chi2"
    accepts = frozenset({CATEGORICAL})
    p_value_test = True
    describes = "chi-squared statistic; drift when the p-value is below the corrected significance"

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence] = None):
        super().__init__(reference, bins)
        from scipy.stats import chi2

        self._chi2 = chi2
        ref = np.asarray(reference, dtype=np.float64)
        self.categories, self.counts = [], []
        for j in range(ref.shape[1]):
            values, counts = np.unique(ref[:, j], return_counts=True)
            self.categories.append(values)
            self.counts.append(counts.astype(np.float64))

    def tables(self, window: np.ndarray) -> np.ndarray:
        """(features, 2, width) contingency tables, zero-padded."""
        rows = []
        for j, (cats, ref_counts) in enumerate(zip(self.categories, self.counts, strict=True)):
            x = window[:, j]
            pos = np.searchsorted(cats, x).clip(max=len(cats) - 1)
            seen = cats[pos] == x
            win_counts = np.bincount(pos[seen], minlength=len(cats)).astype(np.float64)
            extra = np.unique(x[~seen], return_counts=True)[1].astype(np.float64)
            rows.append((np.concatenate((ref_counts, np.zeros(extra.size))), np.concatenate((win_counts, extra))))
        width = max(r[0].size for r in rows)
        out = np.zeros((len(rows), 2, width))
        for j, (ref_row, win_row) in enumerate(rows):
            out[j, 0, :ref_row.size] = ref_row
            out[j, 1, :win_row.size] = win_row
        return out

    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        observed = self.tables(np.asarray(window, dtype=np.float64))
        used = observed.sum(axis=1) > 0  # (features, width): the table's real columns
        dof = used.sum(axis=1) - 1
        expected = observed.sum(axis=2, keepdims=True) * observed.sum(axis=1, keepdims=True) / \
            observed.sum(axis=(1, 2), keepdims=True)
        yates = (dof == 1)[:, None, None]
        diff = expected - observed
        observed = np.where(yates, observed + np.sign(diff) * np.minimum(0.5, np.abs(diff)), observed)
        terms = np.divide((observed - expected) ** 2, expected, out=np.zeros_like(expected), where=expected > 0)
        stat = np.where(dof > 0, terms.sum(axis=(1, 2)), 0.0)
        p = np.where(dof > 0, self._chi2.sf(stat, np.maximum(dof, 1)), 1.0)
        return stat, p
