"""The drift statistic contract and its registry (in the style of Evidently's stattest registry).

A statistic is one module defining a `Statistic` subclass decorated with `@register`. The
class says its `name` (what ``spec.detectors.drift.type`` and ``statistics: {feature: type}``
name), the feature types it `accepts` (``numeric``, ``categorical``), and its
`default_threshold`:

- a **p-value test** (`p_value_test = True`: ``ks``, ``chi2``) has no threshold of its own:
  a feature drifts when its p-value is below the significance corrected for multiple testing
  (Bonferroni or FDR over the p-value-tested features only);
- a **distance** (``psi``, ``hellinger``, ``jensenshannon``, ``wasserstein``) drifts when its
  score is at least its threshold: the documented `default_threshold`, raised for windows
  too small for it (`Statistic.thresholds`: never below the score a stationary window of
  that size exceeds with probability `FALSE_ALARM_RATE`/m, m the distance-tested features,
  so stationary windows of any size are flagged about once in two thousand;
  `bins.BinnedStatistic.noise_floor` says how that score is estimated).

An instance is fitted on the reference columns of the features it tests and scores a
window's same columns at once (vectorised over features): `score(window) -> (scores,
p_values or None)`. Importing a statistic module imports NumPy only (SciPy is imported
when a statistic is fitted), so the settings classes the operator builds can validate
names and feature types against this registry without loading SciPy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Optional

import numpy as np

NUMERIC, CATEGORICAL = "numeric", "categorical"

#: The share of stationary windows the distances may flag, all distance-tested features together (1 in 2,000).
FALSE_ALARM_RATE = 0.0005

_REGISTRY: dict[str, type[Statistic]] = {}


class Statistic(ABC):
    name: ClassVar[str]
    accepts: ClassVar[frozenset[str]]
    default_threshold: ClassVar[Optional[float]] = None
    p_value_test: ClassVar[bool] = False
    #: What `score` means, for /status and the docs.
    describes: ClassVar[str] = ""

    def __init__(self, reference: np.ndarray, bins: Optional[Sequence] = None):
        """Fit on `reference` (rows, features); `bins` (one `Bins` per feature) for binned statistics."""
        self.n_features = int(reference.shape[1])

    @abstractmethod
    def score(self, window: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Scores (features,) of a (rows, features) window and, for p-value tests, p-values (features,)."""

    def thresholds(self, rows: int, level: float) -> np.ndarray:
        """Distances: the score threshold per feature for a window of `rows` instances.

        The documented `default_threshold`, raised where the window (or the reference) is so
        small that a stationary window would exceed it with probability above `level`
        (`noise_floor`): a small window's scores are mostly sampling noise.
        """
        return np.maximum(self.default_threshold or 0.0, self.noise_floor(rows, level))

    def noise_floor(self, rows: int, level: float) -> np.ndarray:
        """Per feature: the score a stationary window of `rows` instances exceeds with probability `level`."""
        return np.zeros(self.n_features)


def register(cls: type[Statistic]) -> type[Statistic]:
    """Class decorator: make a statistic choosable by its name."""
    if not cls.p_value_test and cls.default_threshold is None:
        raise TypeError(f"statistic {cls.name!r} needs a default_threshold or p_value_test = True")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Statistic]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown drift statistic {name!r}; one of {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    return list(_REGISTRY)


#: The statistic a feature type gets when the chosen default does not accept it.
FALLBACK = {NUMERIC: "ks", CATEGORICAL: "chi2"}


def choose(kind: str, default: str, override: Optional[str] = None, *, declared: bool = False) -> str:
    """The statistic for one feature of type `kind`.

    An explicit `override` wins (it must accept the type when the feature is declared
    categorical; a feature only inferred categorical holds numbers, so a numeric statistic
    may be forced on it); otherwise the monitor's `default` if it accepts the type, else the
    type's fallback (``ks`` for numeric, ``chi2`` for categorical).
    """
    if override is not None:
        stat = get(override)
        if kind in stat.accepts or (kind == CATEGORICAL and not declared):
            return override
        raise ValueError(f"statistic {override!r} does not test {kind} features (it accepts "
                         f"{', '.join(sorted(stat.accepts))})")
    return default if kind in get(default).accepts else FALLBACK[kind]
