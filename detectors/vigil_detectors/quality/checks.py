"""The data-quality checks: decoded instances against a baseline's constraints (DESIGN §9).

A pure module (numpy + SciPy, no service, no FastAPI, no TensorFlow): the quality service
and `vigil report` both call it, so they give the same verdicts on the same rows.

Every instance is checked per feature (`count` sums the flags of a batch into `Counts`,
which add up, so a service can fill a window batch by batch):

- ``completeness``: the value is missing (null, NaN, or the key absent from a named row);
- ``dataType``: a value of the wrong type (a string in a numeric column, a non-integer
  category code, infinity) or, for an ``integer`` feature, a number with a fraction;
- ``range`` (numeric, integer): the value lies outside ``Range.bounds``;
- ``categories`` (categorical): a value outside the allowed list (unseen by the schema, or
  a code whose value the constraints no longer allow);
- ``extraColumns``: the row carries keys the schema does not name (feature ``_extra``);
- ``missingColumns``: the feature is absent from every instance of the window.

`verdict(counts, compiled)` turns a window's sums into a `Report`: per (feature, check) the
count, the share of the window's instances (``ratio``) and whether the window *violates*
the check, listed SageMaker-style (``constraint_violations.json``: ``feature_name``,
``constraint_check_type``, ``description``). A check is violated when its count exceeds what
a stationary stream would give, so a clean window is not flagged:

- ``dataType``, ``categories``, ``extraColumns``: any violating instance (a clean stream has none);
- ``completeness`` with ``min`` 1 (the reference was complete): any missing value; with
  ``min`` < 1: more missing values than the binomial upper bound at ``ALPHA`` for a window
  of n instances with a missing share of 1 − min;
- ``range`` with ``referenceCount`` N (min/max are the reference's): more values beyond
  them than the upper bound at ``ALPHA`` of the beta-binomial (n, 2, N − 1) count — for
  continuous data the share of a stream lying outside the range of N reference values is
  Beta(2, N − 1) whatever the distribution, so the bound holds without assuming one (a
  tolerance only makes it stricter); with ``referenceCount`` null (an edited range): any
  value beyond it;
- ``missingColumns``: the feature is absent from every instance.

``ALPHA`` is split over the features (Bonferroni), so a clean window of a wide table is
flagged at most about once in a thousand windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from vigil.baseline import Constraints, FeatureConstraints

CHECKS = ("completeness", "dataType", "range", "categories", "extraColumns", "missingColumns")
#: The feature label unknown keys are counted under (bounded metric labels).
EXTRA = "_extra"
#: False-alarm level of one window, over all its features.
ALPHA = 1e-3
#: Unknown key names a report keeps (the count covers all of them).
MAX_EXTRA_NAMES = 20

_SAGEMAKER = {"completeness": "completeness_check", "dataType": "data_type_check", "range": "range_check",
              "categories": "categorical_values_check", "extraColumns": "extra_column_check",
              "missingColumns": "missing_column_check"}


@dataclass
class Counts:
    """Sums of the instance flags of some instances (one batch, or a window so far)."""

    instances: int
    flags: dict[str, np.ndarray]  # check -> (features,) violating instances (per-feature checks)
    absent: np.ndarray  # (features,) instances whose named row lacked the feature
    extra: int = 0  # instances with unknown keys
    extra_names: dict[str, int] = field(default_factory=dict)

    @classmethod
    def zero(cls, n_features: int) -> Counts:
        z = np.zeros(n_features, dtype=np.int64)
        return cls(0, {c: z.copy() for c in CHECKS[:4]}, z.copy())

    def __add__(self, other: Counts) -> Counts:
        names = dict(self.extra_names)
        for k, v in other.extra_names.items():
            if k in names or len(names) < MAX_EXTRA_NAMES:
                names[k] = names.get(k, 0) + v
        return Counts(self.instances + other.instances, {c: self.flags[c] + other.flags[c] for c in self.flags},
                      self.absent + other.absent, self.extra + other.extra, names)

    def to_json(self) -> dict[str, Any]:
        return {"instances": self.instances, "flags": {c: v.tolist() for c, v in self.flags.items()},
                "absent": self.absent.tolist(), "extra": self.extra, "extraNames": self.extra_names}

    @classmethod
    def from_json(cls, doc: dict[str, Any], n_features: int) -> Counts:
        """The inverse of `to_json`; ValueError when it does not hold `n_features` features."""
        flags = {c: np.asarray(doc["flags"][c], dtype=np.int64) for c in CHECKS[:4]}
        absent = np.asarray(doc["absent"], dtype=np.int64)
        if any(v.shape != (n_features,) for v in (*flags.values(), absent)):
            raise ValueError(f"saved counts are not for {n_features} features")
        return cls(int(doc["instances"]), flags, absent, int(doc["extra"]), dict(doc.get("extraNames", {})))


@dataclass(frozen=True)
class Compiled:
    """Constraints laid out by the schema's columns, ready to check decoded rows."""

    names: tuple[str, ...]
    constraints: tuple[Optional[FeatureConstraints], ...]  # per column (None: no constraints for it)
    integer: np.ndarray  # (f,) bool: dataType integer enabled
    lower: np.ndarray  # (f,) range bounds (-inf/inf where no range check)
    upper: np.ndarray
    allowed_codes: tuple[Optional[np.ndarray], ...]  # per categorical column: codes whose value is allowed
    extra_columns: bool
    missing_columns: bool

    @property
    def n_features(self) -> int:
        return len(self.names)


def compile_constraints(constraints: Constraints, feature_names: Sequence[str],
                        categorical: Optional[dict[int, Any]] = None) -> Compiled:
    """Match constraints to the schema's columns by name; `categorical` (column -> value list or
    count, as `vigil.instances.InputSchema.categorical`) maps allowed values to codes."""
    by_name = {f.name: f for f in constraints.features}
    cats = categorical or {}
    f = len(feature_names)
    per: list[Optional[FeatureConstraints]] = [by_name.get(n) for n in feature_names]
    integer = np.zeros(f, dtype=bool)
    lower, upper = np.full(f, -np.inf), np.full(f, np.inf)
    allowed: list[Optional[np.ndarray]] = []
    for j, c in enumerate(per):
        codes = None
        if c is not None:
            integer[j] = bool(c.data_type and c.data_type.enabled and c.data_type.type == "integer")
            if c.range is not None and c.range.enabled:
                lower[j], upper[j] = c.range.bounds
            if c.categories is not None and c.categories.enabled:
                labels = cats.get(j)
                values = set(c.categories.values)
                if isinstance(labels, (list, tuple)):  # codes are list positions
                    codes = np.array([i for i, v in enumerate(labels) if v in values], dtype=np.float64)
                else:  # codes are the values
                    codes = np.array(sorted(float(v) for v in values if isinstance(v, (int, float))))
        allowed.append(codes)
    return Compiled(tuple(feature_names), tuple(per), integer, lower, upper, tuple(allowed),
                    constraints.extra_columns.enabled, constraints.missing_columns.enabled)


def count(decoded: Any, compiled: Compiled) -> Counts:
    """The flags of a decoded batch (`vigil.instances.Decoded`: rows + masks + extra keys), summed."""
    rows = np.asarray(decoded.rows, dtype=np.float64)
    n, f = rows.shape
    if f != compiled.n_features:
        raise ValueError(f"decoded rows have {f} features, the constraints {compiled.n_features}")
    present = ~np.isnan(rows)
    with np.errstate(invalid="ignore"):
        fraction = present & compiled.integer[None, :] & (rows != np.floor(rows))
        outside = present & ((rows < compiled.lower[None, :]) | (rows > compiled.upper[None, :]))
    categories = np.asarray(decoded.unseen, dtype=bool).copy()
    for j, codes in enumerate(compiled.allowed_codes):
        if codes is None:
            categories[:, j] = False
        else:
            categories[:, j] |= present[:, j] & ~np.isin(rows[:, j], codes)
    flags = {"completeness": np.array(decoded.missing, dtype=bool),  # a copy: the masks below change it
             "dataType": np.asarray(decoded.wrong_type, dtype=bool) | fraction,
             "range": outside, "categories": categories}
    for j, c in enumerate(compiled.constraints):  # a disabled (or absent) check flags nothing
        if c is None or not c.completeness.enabled:
            flags["completeness"][:, j] = False
        if c is None or c.data_type is None or not c.data_type.enabled:
            flags["dataType"][:, j] = False
    names: dict[str, int] = {}
    extra = 0
    for keys in decoded.extra:
        if keys:
            extra += 1
            for k in keys:
                if k in names or len(names) < MAX_EXTRA_NAMES:
                    names[k] = names.get(k, 0) + 1
    return Counts(n, {c: v.sum(axis=0).astype(np.int64) for c, v in flags.items()},
                  np.asarray(decoded.absent, dtype=bool).sum(axis=0).astype(np.int64), extra, names)


@dataclass
class Report:
    """One window's verdict (see the module docstring)."""

    instances: int
    #: (feature, check) -> {"count", "ratio", "allowed", "violated"} for every check that applies
    checks: dict[tuple[str, str], dict[str, Any]]
    violations: list[dict[str, Any]]
    extra_names: dict[str, int] = field(default_factory=dict)

    @property
    def features_violated(self) -> list[str]:
        return list(dict.fromkeys(v["feature_name"] for v in self.violations))

    def ratio(self, feature: str, check: str) -> float:
        entry = self.checks.get((feature, check))
        return 0.0 if entry is None else entry["ratio"]

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object: SageMaker's ``violations`` list plus the nonzero counts."""
        counts: dict[str, dict[str, Any]] = {}
        for (feature, check), e in self.checks.items():
            if e["count"]:
                counts.setdefault(feature, {})[check] = {"count": e["count"], "ratio": e["ratio"]}
        return {"instances": self.instances, "violations": self.violations,
                "featuresViolated": self.features_violated, "counts": counts,
                **({"extraColumns": self.extra_names} if self.extra_names else {})}


def _allowed_missing(n: int, c: FeatureConstraints, alpha: float) -> int:
    if c.completeness.min >= 1.0:
        return 0
    from scipy.stats import binom

    return int(binom.isf(alpha, n, 1.0 - c.completeness.min))


def _allowed_outside(n: int, c: FeatureConstraints, alpha: float) -> int:
    assert c.range is not None
    big_n = c.range.reference_count
    if not big_n:
        return 0
    from scipy.stats import betabinom

    return int(betabinom.isf(alpha, n, 2, max(big_n - 1, 1)))


def _describe(check: str, feature: str, count: int, n: int, c: Optional[FeatureConstraints]) -> str:
    share = f"{count} of {n} instances ({count / n:.1%})"
    if check == "completeness":
        assert c is not None
        return f"{share} miss {feature}; at least {c.completeness.min:.2%} must be present"
    if check == "dataType":
        assert c is not None and c.data_type is not None
        return f"{share} hold a {feature} value that is not {c.data_type.type}"
    if check == "range":
        assert c is not None and c.range is not None
        lo, hi = c.range.bounds
        return f"{share} hold a {feature} value outside [{lo:g}, {hi:g}]"
    if check == "categories":
        return f"{share} hold a {feature} value outside its categories"
    if check == "extraColumns":
        return f"{share} carry keys the schema does not name"
    return f"{feature} is absent from all {n} instances"


def verdict(counts: Counts, compiled: Compiled, alpha: float = ALPHA) -> Report:
    """The `Report` of a window whose instances summed to `counts`."""
    n = counts.instances
    checks: dict[tuple[str, str], dict[str, Any]] = {}
    violations: list[dict[str, Any]] = []
    if n == 0:
        return Report(0, checks, violations)
    level = alpha / max(compiled.n_features, 1)

    def add(feature: str, check: str, k: int, allowed: int, c: Optional[FeatureConstraints]) -> None:
        violated = k > allowed
        checks[(feature, check)] = {"count": k, "ratio": k / n, "allowed": allowed, "violated": violated}
        if violated:
            violations.append({"feature_name": feature, "constraint_check_type": check,
                               "sagemaker_check_type": _SAGEMAKER[check], "count": k, "ratio": k / n,
                               "allowed": allowed, "description": _describe(check, feature, k, n, c)})

    for j, (name, c) in enumerate(zip(compiled.names, compiled.constraints, strict=True)):
        if c is None:
            continue
        if c.completeness.enabled:
            add(name, "completeness", int(counts.flags["completeness"][j]), _allowed_missing(n, c, level), c)
        if c.data_type is not None and c.data_type.enabled:
            add(name, "dataType", int(counts.flags["dataType"][j]), 0, c)
        if c.range is not None and c.range.enabled:
            add(name, "range", int(counts.flags["range"][j]), _allowed_outside(n, c, level), c)
        if compiled.allowed_codes[j] is not None:
            add(name, "categories", int(counts.flags["categories"][j]), 0, c)
        if compiled.missing_columns:
            absent = int(counts.absent[j])
            add(name, "missingColumns", n if absent == n else 0, n - 1, c)
    if compiled.extra_columns:
        add(EXTRA, "extraColumns", counts.extra, 0, None)
    return Report(n, checks, violations, dict(counts.extra_names))


def check_window(decoded: Any, constraints: Union[Constraints, Compiled], *,
                 feature_names: Optional[Sequence[str]] = None, categorical: Optional[dict[int, Any]] = None,
                 alpha: float = ALPHA) -> Report:
    """One window's report from its decoded instances (one `Decoded`, or a list of them). Give
    `Constraints` with the schema's `feature_names` (default: the constraints' own order) and
    `categorical`, or constraints already compiled."""
    compiled = (constraints if isinstance(constraints, Compiled) else
                compile_constraints(constraints, feature_names or constraints.names, categorical))
    batches = decoded if isinstance(decoded, (list, tuple)) else [decoded]
    total = Counts.zero(compiled.n_features)
    for d in batches:
        total = total + count(d, compiled)
    return verdict(total, compiled, alpha)
