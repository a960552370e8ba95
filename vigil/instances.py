"""Decoding inference bodies into feature tables: named features, strings and missing values (DESIGN §8).

`decode_table(body, schema, strict=)` is the one reader of the instances of a request, for
every component (model server, drift, outlier, explainer, quality). It takes

- V1 ``{"instances": [...]}``: rows as lists (one value per feature, in ``featureNames``
  order) or as objects keyed by feature name (``{"age": 41, "sex": "F"}``), or one flat row;
- Seldon's ``{"data": {"ndarray": [...], "names": [...]}}`` (``names``, when given, name the columns);
- V2 ``{"inputs": [...]}``: one tensor of rows, several tensors stacked as columns, or one
  named input per feature (names from ``featureNames``, in any order; ``BYTES`` for strings).

and answers a `Decoded`: float64 rows with NaN where a value is missing (``null``, ``NaN``, an
absent key or input) or unusable, plus the masks saying which. Categorical features declared
with a value list (``sex: [F, M]``) take the strings (or the listed numbers) and map them to
codes 0..k-1 in list order; a feature declared with a count (or a string list) takes codes.
A value outside the declared categories is *unseen*: flagged, NaN in `rows` (drift bins it
as code k, `Decoded.coded`). Keys and inputs the schema does not name are recorded in
`extra`, never refused.

``strict=True`` (model server, drift, outlier, explainer) raises `PayloadError` (400, with a
bounded ``reason``) for infinity (``non_numeric``), integers beyond float64 (``out_of_range``),
non-numeric strings outside a category list (``non_numeric``), non-integer category codes
(``bad_category``), nested values and ragged rows (``bad_shape``) and the wrong number of
columns (``feature_count``). ``strict=False`` (quality) records those values in `wrong_type`
(NaN in `rows`) instead; only a body that is not an inference body at all still raises.

With a tensor schema (``InputSchema.shape``, ``spec.schema.shape``: images, embeddings) the body
holds one V2 tensor ``[n, *shape]`` or V1 ``instances`` of n nested lists; `Decoded.rows` is then
(n, *shape) and the masks are (n, prod(shape)), one column per value (pixel), so
`Decoded.incomplete` names the instances holding a null/NaN. Any other instance shape is a 400
naming the expected and the received shape (`vigil.events.tensor_batch`).

Numbers are taken as the doubles JSON gives (bit for bit), so `vigil.data.load_table`, which
maps reference cells through the same `InputSchema`, reads the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from vigil.events import NUMERIC_DATATYPES, PayloadError, float_array, tensor_batch, v2_reshape

#: Reasons `decode_table` may raise with (bounded metric label values).
REASONS = ("bad_body", "bad_shape", "non_numeric", "out_of_range", "feature_count", "bad_category")

_ABSENT: Any = object()  # a named feature the row or body does not carry
_GAPS = (type(None), type(_ABSENT))  # cells holding no value (null, absent)
_NESTED = frozenset({list, dict, tuple})  # JSON values that are not scalars
Categories = Union[tuple, int, None]


@dataclass(frozen=True)
class _Category:
    """One categorical column: its value list (or count) and the lookups decoding uses."""

    values: Optional[tuple]
    k: Optional[int]
    by_string: dict[str, int]
    by_number: dict[float, int]

    @classmethod
    def of(cls, cats: Categories) -> _Category:
        if isinstance(cats, (list, tuple)):
            values = tuple(cats)
            by_string = {v: i for i, v in reversed(list(enumerate(values))) if isinstance(v, str)}
            by_number = {float(v): i for i, v in reversed(list(enumerate(values)))
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}
            return cls(values, len(values), by_string, by_number)
        return cls(None, None if cats is None else int(cats), {}, {})


@dataclass(frozen=True)
class InputSchema:
    """What a component knows of one instance: feature names, categorical features, or a tensor shape."""

    feature_names: Optional[tuple[str, ...]]
    #: column -> value list (strings / numbers; code = list index), number of categories k, or None (codes, k unknown)
    categorical: dict[int, Categories] = field(default_factory=dict)
    shape: Optional[tuple[int, ...]] = None  # tensor monitors (one instance); owned by helper `images-core`
    _cats: dict[int, _Category] = field(init=False, repr=False, compare=False)
    _code_cols: np.ndarray = field(init=False, repr=False, compare=False)
    _code_k: np.ndarray = field(init=False, repr=False, compare=False)
    _value_cols: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        cats = {int(j): _Category.of(c) for j, c in self.categorical.items()}
        object.__setattr__(self, "_cats", cats)
        # columns whose numbers are codes 0..k-1 (checked together) and those whose numbers are values (looked up)
        coded = sorted(j for j, c in cats.items() if not c.by_number)
        object.__setattr__(self, "_code_cols", np.array(coded, dtype=np.intp))
        object.__setattr__(self, "_code_k", np.array([np.inf if cats[j].k is None else cats[j].k for j in coded]))
        object.__setattr__(self, "_value_cols", sorted(j for j, c in cats.items() if c.by_number))

    @property
    def n_features(self) -> Optional[int]:
        return len(self.feature_names) if self.feature_names else None

    def category(self, column: int) -> Optional[_Category]:
        return self._cats.get(column)

    def to_values(self, rows: np.ndarray) -> np.ndarray:
        """Coded rows as a client sends them: in a column whose value list is all numbers (where a
        number is a value, not a code) each code becomes its value; other columns are unchanged.
        What Vigil's own model calls (the explainer's) send, so the model server reads them back."""
        numeric = {j: c for j, c in self._cats.items() if c.values and c.by_number and not c.by_string}
        if not numeric:
            return rows
        out = np.array(rows, dtype=np.float64, copy=True)
        for j, cat in numeric.items():
            values = np.array([float(v) for v in cat.values or ()] + [np.nan])
            codes = out[:, j]
            ok = np.isfinite(codes) & (codes >= 0) & (codes < len(values) - 1) & (codes == np.floor(codes))
            out[:, j] = np.where(ok, values[np.where(ok, codes, len(values) - 1).astype(int)], np.nan)
        return out

    @classmethod
    def from_spec(cls, schema: Any) -> InputSchema:
        """From a `vigil.spec.SchemaSpec` (``featureNames``, ``categorical`` keyed by name, ``shape``)."""
        names = getattr(schema, "feature_names", None)
        shape = getattr(schema, "shape", None)
        return cls.from_settings(names, getattr(schema, "categorical", None) or {},
                                 tuple(int(s) for s in shape) if shape else None)

    @classmethod
    def from_settings(cls, feature_names: Optional[Sequence[str]], categorical: Optional[Mapping[Any, Any]] = None,
                      shape: Optional[Sequence[int]] = None) -> InputSchema:
        """From a service's settings: feature names and the categorical block keyed by column index
        (``{"2": ["F", "M"]}``, as `vigil.plan` renders it) or by feature name; a JSON string is parsed."""
        from vigil.spec import categorical_index

        if isinstance(categorical, str):
            categorical = json.loads(categorical) if categorical.strip() else {}
        names = tuple(str(n) for n in feature_names) if feature_names else None
        cats: dict[int, Categories] = {}
        for key, value in (categorical or {}).items():
            cats[categorical_index(key, names or ())] = tuple(value) if isinstance(value, (list, tuple)) else value
        return cls(names, cats, tuple(int(s) for s in shape) if shape else None)


@dataclass
class Decoded:
    """Rows of one body, with masks saying which values were missing, unseen or of the wrong type."""

    rows: np.ndarray      # (n, f) float64; NaN where missing, unseen or wrong_type; categories as codes 0..k-1
    missing: np.ndarray   # (n, f) bool: null / NaN / absent key
    absent: np.ndarray    # (n, f) bool: key absent from a named row / named V2 input (subset of missing)
    unseen: np.ndarray    # (n, f) bool: categorical value outside the declared list (string, or code >= k)
    wrong_type: np.ndarray  # (n, f) bool: only with strict=False: a value of the wrong type
    extra: list[list[str]]  # per row, unknown keys (named V1 rows, unknown V2 input names); read-only
    #: every cell arrived as a finite number and no column is categorical: the masks are all False
    complete: bool = False

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def incomplete(self) -> np.ndarray:
        """(n,) bool: rows holding at least one missing value (the rows drift and outlier skip)."""
        return self.missing.any(axis=1)

    def coded(self, schema: InputSchema) -> np.ndarray:
        """`rows` with each unseen category as code k (its own bin), where k is known; NaN stays for the rest."""
        out = self.rows
        if self.unseen.any():
            out = out.copy()
            for j in np.nonzero(self.unseen.any(axis=0))[0]:
                cat = schema.category(int(j))
                if cat is not None and cat.k is not None:
                    out[self.unseen[:, j], j] = cat.k
        return out


# -- body -> cells --------------------------------------------------------------------------------------


def _flat(data: Any) -> list:
    """Nested lists flattened (row-major) without recursion (bodies may nest deeply)."""
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _as_floats(data: Any, strict: bool) -> Optional[np.ndarray]:
    """`data` as a float64 array when numpy reads it as numbers (None -> NaN), else None (cell by cell)."""
    try:
        arr = float_array(data)
    except OverflowError:  # an integer literal beyond float64 (e.g. 400 digits)
        if strict:
            raise PayloadError("out_of_range", "instances hold a number too large for float64") from None
        return None
    except (TypeError, ValueError):
        return None
    return None if arr.dtype == object else arr


def _v2_tensor(tensor: Any, strict: bool) -> tuple[Optional[str], np.ndarray]:
    """(name, array) of one V2 input: float64 when every value is a number or null, else object."""
    if not isinstance(tensor, dict) or "data" not in tensor:
        raise PayloadError("bad_body", "each V2 input tensor needs 'data' (and 'shape', 'datatype')")
    datatype = str(tensor.get("datatype", "FP64")).upper()
    if datatype not in NUMERIC_DATATYPES and datatype != "BYTES":
        raise PayloadError("non_numeric", f"V2 datatype {datatype!r} is neither numeric nor BYTES")
    data = tensor["data"]
    arr = _as_floats(data, strict)
    if arr is None:
        flat = _flat(data)
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    elif tensor.get("shape") is not None:
        arr = arr.ravel()
    name = tensor.get("name")
    return (name if isinstance(name, str) else None), v2_reshape(arr, tensor.get("shape"), "input")


def _columns(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    if arr.ndim == 1:
        return arr.reshape(-1, 1)
    if arr.ndim == 2:
        return arr
    raise PayloadError("bad_shape", f"expected rows of features, got an input of shape {list(arr.shape)}")


def _object(arr: np.ndarray) -> np.ndarray:
    return arr if arr.dtype == object else arr.astype(object)


def _from_v2(inputs: Any, schema: InputSchema, strict: bool) -> tuple[np.ndarray, Optional[list[list[str]]], bool]:
    """(table, extra, named) of a V2 body; table is float64 or object (with `_ABSENT` cells)."""
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("bad_body", "'inputs' must be a non-empty list of tensors")
    tensors = [_v2_tensor(t, strict) for t in inputs]
    names = schema.feature_names
    if names and any(n in names for n, _ in tensors) and (len(tensors) > 1 or len(names) == 1):
        cols = {}
        unknown: list[str] = []
        for n, arr in tensors:
            col = _columns(arr)
            if col.shape[1] != 1:
                raise PayloadError("bad_shape", f"V2 input {n!r} must hold one value per row (shape [n] or [n, 1]), "
                                                f"got shape {list(arr.shape)}")
            if n in names:
                if n in cols:
                    raise PayloadError("bad_body", f"V2 input {n!r} is given twice")
                cols[n] = col[:, 0]
            else:
                unknown.append(str(n))
        lengths = {len(c) for c in cols.values()}
        if len(lengths) != 1:
            raise PayloadError("bad_shape", "V2 input tensors have different numbers of rows")
        n_rows = lengths.pop()
        if all(c.dtype != object for c in cols.values()) and len(cols) == len(names):
            table = np.column_stack([cols[f] for f in names])
        else:
            table = np.empty((n_rows, len(names)), dtype=object)
            for j, f in enumerate(names):
                table[:, j] = cols[f] if f in cols else _ABSENT
        return table, [list(unknown) for _ in range(n_rows)], True
    if len(tensors) == 1:  # one tensor of rows; 1-D: one instance
        arr = tensors[0][1]
        return (arr.reshape(1, -1) if arr.ndim == 1 else _columns(arr)), None, False
    cols_ = [_columns(a) for _, a in tensors]
    if len({c.shape[0] for c in cols_}) != 1:
        raise PayloadError("bad_shape", "V2 input tensors have different numbers of rows")
    if any(c.dtype == object for c in cols_):
        cols_ = [_object(c) for c in cols_]
    return np.hstack(cols_), None, False


def _from_v1(rows: Any, schema: InputSchema, strict: bool, what: str,
             names: Optional[Sequence[str]] = None) -> tuple[np.ndarray, Optional[list[list[str]]], bool]:
    """(table, extra, named) of V1 rows (lists, objects keyed by feature name, or one flat row)."""
    if not isinstance(rows, list):
        raise PayloadError("bad_shape", f"{what} must be a list of rows")
    if not rows:
        raise PayloadError("bad_shape", f"{what} hold no rows")
    if not any(isinstance(r, (list, dict)) for r in rows):
        rows = [rows]  # one instance
    if names is None and not any(isinstance(r, dict) for r in rows):
        arr = _as_floats(rows, strict)
        if arr is not None:
            if arr.ndim != 2:
                raise PayloadError("bad_shape", f"expected rows of features, got an array of shape {list(arr.shape)}")
            return arr, None, False
    if names is not None:
        names = [str(n) for n in names]
        if any(not isinstance(r, list) or len(r) != len(names) for r in rows):
            raise PayloadError("bad_shape", f"data.ndarray rows must each hold one value per name ({len(names)})")
        rows = [dict(zip(names, r, strict=True)) for r in rows]
    width = schema.n_features
    named = any(isinstance(r, dict) for r in rows)
    if named and not schema.feature_names:
        raise PayloadError("bad_body", f"{what} keyed by feature name need schema.featureNames")
    if width is None:
        first = next(r for r in rows if isinstance(r, list)) if not named else None
        width = len(first) if first is not None else 0
    if named and all(isinstance(r, dict) for r in rows):  # objects only: column by column
        fn = schema.feature_names or ()
        known = frozenset(fn)
        table = np.empty((len(rows), width), dtype=object)
        for j, f in enumerate(fn):
            col = [r.get(f, _ABSENT) for r in rows]
            if _NESTED.isdisjoint(map(type, col)):
                table[:, j] = col  # scalars: one C-level copy
            else:  # nested values stay single cells (numpy would read a list as more dimensions)
                table[:, j] = np.fromiter(col, dtype=object, count=len(rows))
        return table, [[str(k) for k in r if k not in known] for r in rows], named
    table = np.empty((len(rows), width), dtype=object)
    extra: list[list[str]] = []
    lengths = set()
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            fn = schema.feature_names or ()
            for j, f in enumerate(fn):
                table[i, j] = row.get(f, _ABSENT)
            extra.append([str(k) for k in row if k not in fn])
        elif isinstance(row, list):
            lengths.add(len(row))
            if len(row) == width:
                for j, v in enumerate(row):
                    table[i, j] = v
                extra.append([])
            elif strict:
                if len(lengths) > 1 or named:
                    raise PayloadError("bad_shape", f"{what} rows must all have the same length")
                raise PayloadError("feature_count", f"expected {width} features per row, got {len(row)}")
            else:  # quality: a short row's tail is absent, a long row's tail extra
                for j, v in enumerate(row[:width] + [_ABSENT] * (width - len(row))):
                    table[i, j] = v
                extra.append([f"[{j}]" for j in range(width, len(row))])
        else:
            raise PayloadError("bad_shape", f"{what} mix rows and single values")
    if strict and len(lengths) > 1:
        raise PayloadError("bad_shape", f"{what} rows must all have the same length")
    return table, extra, named


# -- cells -> numbers -----------------------------------------------------------------------------------


def _number(v: Any, strict: bool) -> Optional[float]:
    """A JSON scalar as a float (None: not a number; strict raises for what can never be one)."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        try:
            return float(v)
        except OverflowError:
            if strict:
                raise PayloadError("out_of_range", "instances hold a number too large for float64") from None
            return None
    if isinstance(v, str):
        try:
            return float(v)
        except (ValueError, OverflowError):
            return None
    if strict:
        raise PayloadError("bad_shape", "each value must be a number, a string or null, "
                                        f"got {type(v).__name__}")
    return None


def _object_table(table: np.ndarray, schema: InputSchema, strict: bool, out: dict) -> np.ndarray:
    """(n, f) bool: which cells of an object table arrived as numbers; fills ``out["rows"]`` with
    them and with the codes of listed category strings, and the masks with what is absent, null,
    an unseen string or (lax) of the wrong type."""
    n, f = table.shape
    vals, numeric = out["rows"], np.zeros((n, f), dtype=bool)
    missing, absent, unseen, wrong = out["missing"], out["absent"], out["unseen"], out["wrong_type"]
    names = schema.feature_names
    for j in range(f):
        cat = schema.category(j)
        by_string = cat.by_string if cat is not None else None
        if _column(table[:, j], by_string, vals[:, j], numeric[:, j], missing[:, j], absent[:, j]):
            continue
        for i in range(n):
            v = table[i, j]
            if v is _ABSENT:
                absent[i, j] = missing[i, j] = True
            elif v is None:
                missing[i, j] = True
            elif by_string is not None and isinstance(v, str) and v in by_string:
                vals[i, j] = by_string[v]
            else:
                number = _number(v, strict)
                if number is not None:
                    vals[i, j], numeric[i, j] = number, True
                elif isinstance(v, str) and cat is not None and cat.values is not None:
                    unseen[i, j] = True
                elif strict:
                    raise PayloadError("non_numeric", f"feature {_label(names, j)} must be a number"
                                       + (" or a category code" if cat is not None else "") + f"; got {v[:40]!r}")
                else:
                    wrong[i, j] = True
    return numeric




def _column(col: np.ndarray, by_string: Optional[dict[str, int]], vals: np.ndarray, numeric: np.ndarray,
            missing: np.ndarray, absent: np.ndarray) -> bool:
    """One object column decoded at once, when it holds only numbers (int/float, not bool) or only
    listed category strings, besides null and absent cells: what the cell loop of `_object_table`
    gives for those, in a few NumPy calls. False (nothing written) for any other column."""
    kinds = set(map(type, col))
    gaps = kinds & set(_GAPS)
    kinds -= gaps
    if not kinds:
        values = None
    elif kinds <= {int, float}:
        values = "numbers"
    elif kinds == {str} and by_string:
        values = "categories"
    else:
        return False
    is_absent = np.fromiter((v is _ABSENT for v in col), dtype=bool, count=len(col)) if type(_ABSENT) in gaps \
        else None
    is_none = np.fromiter((v is None for v in col), dtype=bool, count=len(col)) if type(None) in gaps else None
    gap = (is_absent if is_absent is not None else False) | (is_none if is_none is not None else False)
    present = ~gap if gaps else slice(None)
    if values == "numbers":
        try:
            vals[present] = col[present].astype(np.float64)
        except OverflowError:  # an integer beyond float64: the cell loop says which
            return False
        numeric[present] = True
    elif values == "categories":
        codes = [by_string.get(v, -1) for v in col[present]] if by_string else []
        if -1 in codes:  # an unseen category: the cell loop flags it
            return False
        vals[present] = codes
    if is_absent is not None:
        absent |= is_absent
        missing |= is_absent
    if is_none is not None:
        missing |= is_none
    return True


def _label(names: Optional[tuple[str, ...]], j: int) -> str:
    return repr(names[j]) if names else f"[{j}]"


def _values(vals: np.ndarray, num: np.ndarray, cat: _Category, out: dict, j: int) -> None:
    """Column `j` of a category whose list holds numbers: each number that arrived is looked up (its code)."""
    idx = np.nonzero(num)[0]
    codes = np.array([cat.by_number.get(float(x), -1) for x in vals[idx]], dtype=np.float64)
    vals[idx] = codes
    out["unseen"][idx[codes < 0], j] = True


def _finish(table: np.ndarray, extra: Optional[list[list[str]]], schema: InputSchema, strict: bool) -> Decoded:
    n = table.shape[0]
    width = schema.n_features
    if n == 0:
        raise PayloadError("bad_shape", "the body holds no rows")
    if width is not None and table.shape[1] != width:
        if strict:
            raise PayloadError("feature_count", f"expected {width} features per row, got {table.shape[1]}")
        have = table.shape[1]
        fixed = np.empty((n, width), dtype=object)
        fixed[:, :min(have, width)] = table[:, :width]
        fixed[:, have:] = _ABSENT
        table = fixed
        extra = [e + [f"[{j}]" for j in range(width, have)] for e in (extra or [[] for _ in range(n)])]
    f = table.shape[1]
    if table.dtype != object and not schema._cats:  # the usual body: numbers only, no category to map
        rows = np.array(table, dtype=np.float64, order="C")
        if np.isfinite(rows).all():
            return Decoded(rows=rows, missing=np.zeros((n, f), dtype=bool), absent=np.zeros((n, f), dtype=bool),
                           unseen=np.zeros((n, f), dtype=bool), wrong_type=np.zeros((n, f), dtype=bool),
                           extra=extra if extra is not None else [[]] * n, complete=True)
    out = {k: np.zeros((n, f), dtype=bool) for k in ("missing", "absent", "unseen", "wrong_type")}
    names = schema.feature_names
    if table.dtype != object:  # every value arrived as a number or null (NaN)
        out["rows"] = rows = np.array(table, dtype=np.float64, order="C")
        numeric = None
    else:
        out["rows"] = rows = np.full((n, f), np.nan)
        numeric = _object_table(table, schema, strict, out)
    finite = np.isfinite(rows)
    if not finite.all():  # NaN (a number that arrived as NaN) is a missing value, infinity never a number
        nan = np.isnan(rows)
        out["missing"] |= nan if numeric is None else nan & numeric
        inf = ~(finite | nan)
        if inf.any():
            if strict:
                j = int(np.nonzero(inf.any(axis=0))[0][0])
                raise PayloadError("non_numeric", f"feature {_label(names, j)} holds infinity")
            out["wrong_type"] |= inf
    num = finite if numeric is None else finite & numeric  # cells that arrived as finite numbers
    inside = schema._code_cols < f
    cols, ks = schema._code_cols[inside], schema._code_k[inside]
    if cols.size:  # numbers in a count-only or string-list category are codes 0..k-1
        sub, arrived = rows[:, cols], num[:, cols]
        wrong = arrived & (sub != np.floor(sub))
        if wrong.any():
            if strict:
                i, c = (int(v[0]) for v in np.nonzero(wrong))
                cat = schema._cats[int(cols[c])]
                raise PayloadError("bad_category", f"feature {_label(names, int(cols[c]))} is categorical: a code "
                                                   f"must be an integer 0..{cat.k - 1 if cat.k else 'k-1'}, "
                                                   f"got {float(sub[i, c])!r}")
            out["wrong_type"][:, cols] |= wrong
        out["unseen"][:, cols] |= arrived & ~wrong & ((sub < 0) | (sub >= ks))
    for j in schema._value_cols:
        if j < f and num[:, j].any():
            _values(rows[:, j], num[:, j], schema._cats[j], out, j)
    bad = out["missing"] | out["unseen"] | out["wrong_type"]
    if bad.any():
        rows[bad] = np.nan
    return Decoded(rows=rows, missing=out["missing"], absent=out["absent"], unseen=out["unseen"],
                   wrong_type=out["wrong_type"], extra=extra if extra is not None else [[]] * n)


def _tensors(body: dict, shape: tuple[int, ...], strict: bool) -> Decoded:
    """A tensor schema's body: (n, *shape) float64 with null/NaN as missing values."""
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, list) or not inputs:
            raise PayloadError("bad_body", "'inputs' must be a non-empty list of tensors")
        if len(inputs) != 1:
            raise PayloadError("bad_shape", f"a tensor monitor (instance shape {list(shape)}) takes one V2 input "
                                            f"tensor, got {len(inputs)}")
        _, arr = _v2_tensor(inputs[0], strict)
    elif "instances" in body or (isinstance(body.get("data"), dict) and "ndarray" in body["data"]):
        data = body["instances"] if "instances" in body else body["data"]["ndarray"]
        floats = _as_floats(data, strict)  # null -> NaN (numpy reads None as NaN for float64)
        if floats is None:
            raise PayloadError("bad_shape", f"instances must be nested lists of numbers of shape {list(shape)} each "
                                            "(ragged or non-numeric values)")
        arr = floats
    else:
        raise PayloadError("bad_body", "body has neither 'inputs' (V2) nor 'instances' (V1)")
    if arr.dtype == object:
        raise PayloadError("non_numeric", f"a tensor of shape {list(shape)} must hold numbers")
    batch = tensor_batch(arr, shape)
    flat = batch.reshape(len(batch), -1)
    missing = np.isnan(flat)
    inf = np.isinf(flat)
    wrong = np.zeros_like(missing)
    if inf.any():
        if strict:
            raise PayloadError("non_numeric", "instances hold infinity")
        wrong = inf
        batch = batch.copy()
        batch.reshape(len(batch), -1)[inf] = np.nan
    none = np.zeros_like(missing)
    return Decoded(rows=batch, missing=missing, absent=none, unseen=none.copy(), wrong_type=wrong,
                   extra=[[] for _ in range(len(batch))])


def decode_table(body: Any, schema: InputSchema, *, strict: bool = True) -> Decoded:
    """The instances of an inference request body as a `Decoded` table; see the module docstring."""
    if not isinstance(body, dict):
        raise PayloadError("bad_body", "body must be a JSON object with 'inputs' (V2) or 'instances' (V1)")
    if schema.shape is not None:
        return _tensors(body, schema.shape, strict)
    if "inputs" in body:
        table, extra, _ = _from_v2(body["inputs"], schema, strict)
    elif "instances" in body:
        table, extra, _ = _from_v1(body["instances"], schema, strict, "instances")
    elif isinstance(body.get("data"), dict) and "ndarray" in body["data"]:  # Seldon's V1 body
        names = body["data"].get("names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(x, str) for x in names)):
            raise PayloadError("bad_body", "data.names must be a list of feature names")
        table, extra, _ = _from_v1(body["data"]["ndarray"], schema, strict, "data.ndarray", names or None)
    else:
        raise PayloadError("bad_body", "body has neither 'inputs' (V2) nor 'instances' (V1)")
    return _finish(table, extra, schema, strict)


def decode_array(table: np.ndarray, schema: InputSchema, *, strict: bool = True) -> Decoded:
    """A (n, f) table already read (float64, or object holding numbers, strings and None) decoded
    like a body's rows: category values to codes, NaN/None missing. `vigil.data.load_table` uses it."""
    return _finish(table, None, schema, strict)
