"""Drift statistics: the pluggable part of the drift service that compares a window with the reference.

- `base`: the contract (`Statistic`: name, accepted feature types, default threshold) and
  the registry (`register`, `get`, `names`, `choose`);
- one module per statistic, each registering itself: `ks`, `chi2` (p-value tests),
  `psi`, `hellinger`, `jensenshannon` (on the reference bins of `bins`), `wasserstein`;
- `suite`: a monitor's fitted check (`DriftSuite`: a statistic per feature, corrections,
  verdict; saved as ``drift.json`` + ``reference.npy``);
- `alibi`: a saved alibi-detect detector as the check (the only path that imports
  alibi-detect, and so TensorFlow).

`fit_statistic` and `load_statistic` are what the drift service and `vigil train` call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from vigil_detectors.drift.statistics import chi2, hellinger, jensenshannon, ks, psi, wasserstein  # noqa: F401  (register)
from vigil_detectors.drift.statistics.base import get, names, register
from vigil_detectors.drift.statistics.suite import (
    ARTIFACT,
    CheckResult,
    DriftSuite,
    adjusted_min_p,
    inferred_categorical,
    load_suite,
)

if TYPE_CHECKING:
    from vigil_detectors.drift.statistics.alibi import AlibiUnivariate

DriftStatistic = Union[DriftSuite, "AlibiUnivariate"]

__all__ = ["CheckResult", "DriftStatistic", "DriftSuite", "adjusted_min_p", "fit_statistic", "get",
           "inferred_categorical", "load_statistic", "names", "register"]


def fit_statistic(x_ref: np.ndarray, *, p_value: float = 0.05, correction: str = "bonferroni",
                  categorical: Optional[dict[int, Optional[int]]] = None, kind: str = "ks",
                  statistics: Optional[dict[int, str]] = None, bins: Optional[dict] = None) -> DriftSuite:
    """Fit the drift check from reference data: default statistic `kind`, per-feature `statistics` overrides,
    `bins` (per feature index, e.g. a baseline's histograms) for the binned statistics."""
    return DriftSuite(x_ref, p_value=p_value, correction=correction, categorical=categorical, statistic=kind,
                      statistics=statistics, bins=bins)


def load_statistic(path: str, *, p_value: Optional[float] = None, correction: Optional[str] = None,
                   kind: Optional[str] = None, statistics: Optional[dict[int, str]] = None,
                   bins: Optional[dict] = None) -> DriftStatistic:
    """A check saved with `DriftSuite.save` (fitted again from its reference) or an alibi-detect detector directory."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"drift artifact {path} not found")
    if (Path(path) / ARTIFACT).exists():
        return load_suite(Path(path), p_value=p_value, correction=correction, statistic=kind, statistics=statistics,
                          bins=bins or None)
    from vigil_detectors.drift.statistics.alibi import load_alibi

    return load_alibi(path, p_value=p_value, correction=correction)
