"""The baseline of a monitor: what its reference data looks like, and the checks quality runs (DESIGN §9).

Modelled on SageMaker Model Monitor's baseline job, a baseline is a directory of two JSON files:

- ``statistics.json`` — per feature: ``inferredType`` (``numeric``, ``integer`` or
  ``categorical``), ``count`` (values present), ``missingCount``, ``min``, ``max``, ``mean``,
  ``std``, ``quantiles``, ``distinctCount``, ``topValues`` and ``histogram``: exactly the bins
  `vigil_detectors.drift.statistics.bins.reference_bins` gives for the reference column
  (numeric: interior ``edges`` + ``counts``; categorical: ``values`` + ``counts``, last bin
  "unseen"), so drift, reports and the baseline share one binning.
- ``constraints.json`` — per feature the checks a user may edit, each with ``enabled``:
  ``completeness`` (``min``: least share of values present; the reference's share),
  ``dataType`` (``type``), ``range`` (``min``/``max``, widened by ``tolerance`` × (max − min)
  each side; ``referenceCount`` is the number of reference values they came from, see
  `vigil_detectors.quality.checks`; null flags every value beyond them) for numeric and
  integer features, ``categories`` (``values`` allowed) for categorical ones; and
  monitor-level ``extraColumns`` / ``missingColumns`` (``enabled``).

A feature is ``categorical`` when the schema declares it so (its value list, or codes
0..k−1), ``integer`` when every reference value present is a whole number, else ``numeric``.

`compute_baseline(table, schema)` profiles an encoded reference table (categorical values as
codes, NaN for missing); `Baseline.write(dir)` writes both files; `load_baseline(dir)` is the
one reader (used by the quality service and `vigil report`), and a hand-edited file that does
not validate is a `BaselineError` naming the file and the field. Imports numpy, pydantic and
the drift bins only (no FastAPI, no TensorFlow).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from vigil.errors import VigilError

if TYPE_CHECKING:
    from vigil.instances import InputSchema

STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
VERSION = 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_VALUES = 10

FeatureType = Literal["numeric", "integer", "categorical"]
Value = Union[str, int, float]


class BaselineError(VigilError, ValueError):
    """A baseline that cannot be computed or read; the message names the file and the field."""


class _Doc(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ----------------------------------------------------------------------------- statistics.json

class ValueCount(_Doc):
    value: Value
    count: int


class FeatureStatistics(_Doc):
    name: str
    inferred_type: FeatureType
    count: int = Field(ge=0)
    missing_count: int = Field(ge=0)
    min: Optional[float] = None
    max: Optional[float] = None
    mean: Optional[float] = None
    std: Optional[float] = None
    quantiles: dict[str, float] = Field(default_factory=dict)
    distinct_count: int = Field(0, ge=0)
    top_values: list[ValueCount] = Field(default_factory=list)
    #: `reference_bins(...).to_json()` (+ ``labels`` of a categorical value list)
    histogram: Optional[dict[str, Any]] = None


class Dataset(_Doc):
    item_count: int = Field(ge=0)


class Statistics(_Doc):
    version: int = VERSION
    dataset: Dataset
    features: list[FeatureStatistics]

    def feature(self, name: str) -> FeatureStatistics:
        return next(f for f in self.features if f.name == name)


# ----------------------------------------------------------------------------- constraints.json

class Completeness(_Doc):
    enabled: bool = True
    min: float = Field(1.0, ge=0.0, le=1.0)


class DataType(_Doc):
    enabled: bool = True
    type: FeatureType


class Range(_Doc):
    enabled: bool = True
    min: float
    max: float
    tolerance: float = Field(0.0, ge=0.0)
    reference_count: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"range.min ({self.min}) exceeds range.max ({self.max})")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval a value must lie in (min/max widened by the tolerance)."""
        pad = self.tolerance * (self.max - self.min)
        return self.min - pad, self.max + pad


class Categories(_Doc):
    enabled: bool = True
    values: list[Value] = Field(min_length=1)


class FeatureConstraints(_Doc):
    name: str
    inferred_type: FeatureType
    completeness: Completeness = Field(default_factory=Completeness)
    data_type: Optional[DataType] = None
    range: Optional[Range] = None
    categories: Optional[Categories] = None


class Switch(_Doc):
    enabled: bool = True


class Constraints(_Doc):
    version: int = VERSION
    features: list[FeatureConstraints]
    extra_columns: Switch = Field(default_factory=Switch)
    missing_columns: Switch = Field(default_factory=Switch)

    @model_validator(mode="after")
    def _unique(self):
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"features named more than once: {dup}")
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


# ----------------------------------------------------------------------------- the baseline

class Baseline(BaseModel):
    statistics: Statistics
    constraints: Constraints

    def write(self, directory: Union[str, os.PathLike]) -> Path:
        """Write ``statistics.json`` and ``constraints.json`` into `directory` (created); each file
        is written to a temporary name and renamed, so a reader never sees half of one."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in ((STATISTICS_FILE, self.statistics), (CONSTRAINTS_FILE, self.constraints)):
            tmp = out / f".{name}.tmp"
            tmp.write_text(json.dumps(doc.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2) + "\n")
            os.replace(tmp, out / name)
        return out


def _read(path: Path, model: type[BaseModel]) -> Any:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path}: not found (a baseline directory holds {STATISTICS_FILE} and "
                            f"{CONSTRAINTS_FILE}; `vigil baseline monitor.yaml` writes them)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise BaselineError(f"{path}: not valid JSON: {exc}") from None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        msg = err["msg"].removeprefix("Value error, ")
        raise BaselineError(f"{path}: {where}: {'unknown field' if err['type'] == 'extra_forbidden' else msg}") from None


def load_baseline(directory: Union[str, os.PathLike]) -> Baseline:
    """Read a baseline directory (both files); `BaselineError` names the file and field that is wrong."""
    text = os.fspath(directory)
    d = Path(text[len("file://"):] if text.startswith("file://") else text)
    if d.is_file():
        raise BaselineError(f"{d}: is a file; a baseline is a directory holding {STATISTICS_FILE} and "
                            f"{CONSTRAINTS_FILE}")
    stats = _read(d / STATISTICS_FILE, Statistics)
    cons = _read(d / CONSTRAINTS_FILE, Constraints)
    if [f.name for f in stats.features] != cons.names:
        raise BaselineError(f"{d}: {STATISTICS_FILE} and {CONSTRAINTS_FILE} name different features "
                            f"({[f.name for f in stats.features]} vs {cons.names})")
    return Baseline(statistics=stats, constraints=cons)


# ----------------------------------------------------------------------------- computing it

def _num(x: float) -> float:
    return float(x)


def _value(code: float, labels: Optional[Sequence[Value]]) -> Value:
    if labels is not None and float(code).is_integer() and 0 <= int(code) < len(labels):
        return labels[int(code)]
    return int(code) if float(code).is_integer() else float(code)


def _feature(name: str, column: np.ndarray, categorical: bool, categories: Any
             ) -> tuple[FeatureStatistics, FeatureConstraints]:
    from vigil_detectors.drift.statistics.bins import reference_bins

    present = column[~np.isnan(column)]
    n, missing = int(present.size), int(column.size - present.size)
    labels = list(categories) if isinstance(categories, (list, tuple)) else None
    if categorical:
        kind: FeatureType = "categorical"
    elif n and np.all(present == np.round(present)):
        kind = "integer"
    else:
        kind = "numeric"
    values, counts = np.unique(present, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:TOP_VALUES]
    stats: dict[str, Any] = {
        "name": name, "inferred_type": kind, "count": n, "missing_count": missing,
        "distinct_count": int(values.size),
        "top_values": [ValueCount(value=_value(values[i], labels), count=int(counts[i])) for i in order],
    }
    if n:
        hist = reference_bins(present, kind == "categorical").to_json()
        if labels is not None:
            hist["labels"] = [_value(v, labels) for v in hist["values"]]
        stats["histogram"] = hist
        if kind != "categorical":
            stats.update(min=_num(present.min()), max=_num(present.max()), mean=_num(present.mean()),
                         std=_num(present.std(ddof=1)) if n > 1 else 0.0,
                         quantiles={f"{q:g}": _num(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES),
                                                                       strict=True)})
    completeness = Completeness(min=round(n / column.size, 4) if column.size else 1.0)
    cons = FeatureConstraints(name=name, inferred_type=kind, completeness=completeness,
                              data_type=DataType(type=kind))
    if kind == "categorical":
        # a value list, the codes 0..k-1 of a count, or (k unknown) the codes the reference holds
        allowed: list[Value] = (labels if labels is not None else list(range(int(categories))) if categories
                                else [_value(v, None) for v in values])
        if allowed:
            cons.categories = Categories(values=allowed)
    elif n:
        cons.range = Range(min=_num(present.min()), max=_num(present.max()), reference_count=n)
    return FeatureStatistics(**stats), cons


def compute_baseline(table: np.ndarray, schema: InputSchema) -> Baseline:
    """Profile an encoded reference table (rows, features): categorical values as codes, NaN missing."""
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise BaselineError(f"a baseline needs a non-empty (rows, features) table, got shape {list(x.shape)}")
    names = list(schema.feature_names or [f"f{i}" for i in range(x.shape[1])])
    if len(names) != x.shape[1]:
        raise BaselineError(f"{len(names)} feature names for a table of {x.shape[1]} columns")
    if np.isinf(x).any():
        raise BaselineError("the reference holds infinite values")
    cats = dict(schema.categorical or {})
    pairs = [_feature(name, x[:, j], j in cats, cats.get(j)) for j, name in enumerate(names)]
    return Baseline(statistics=Statistics(dataset=Dataset(item_count=x.shape[0]), features=[s for s, _ in pairs]),
                    constraints=Constraints(features=[c for _, c in pairs]))
