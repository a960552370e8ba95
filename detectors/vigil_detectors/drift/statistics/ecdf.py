"""Both samples' empirical CDFs on their merged values, for every feature at once (KS and Wasserstein).

`merged_cdfs(reference, window)` sorts reference and window together per column (one
`argsort` over all features) and returns, at each merged value, the reference's and the
window's ECDF — the same numbers `scipy.stats.ks_2samp` (``searchsorted(..., side='right') / n``)
and `scipy.stats.wasserstein_distance` compute one feature at a time.
"""

from __future__ import annotations

import numpy as np


def merged_cdfs(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values, cdf_ref, cdf_win, last) of shape (N+n, features), sorted per column.

    `last` marks the last of each run of equal values: there the ECDFs hold their
    right-continuous values (what ``searchsorted(side='right')`` gives).
    """
    n_ref, n_win = reference.shape[0], window.shape[0]
    both = np.concatenate((reference, window), axis=0)
    order = np.argsort(both, axis=0, kind="stable")
    values = np.take_along_axis(both, order, axis=0)
    from_ref = np.cumsum(order < n_ref, axis=0)
    from_win = np.arange(1, n_ref + n_win + 1)[:, None] - from_ref
    last = np.ones_like(values, dtype=bool)
    last[:-1] = values[1:] != values[:-1]
    return values, from_ref / n_ref, from_win / n_win, last
