"""Reading reference (training / baseline) data into a numeric feature matrix.

`load_table(path, feature_names, categorical, missing=)` is what the drift detector (fitting
at start-up), `vigil train`, `vigil validate`, the baseline and the demo use to read the
`reference` of a `ModelMonitor`:

- CSV (``.csv``, ``.csv.gz``, ``.tsv``, ``.txt``): with a header row, the columns named by
  ``feature_names`` are selected in that order (other columns, e.g. a label, are ignored);
  without a header (the first row is all numbers) the file must have exactly one column
  per feature, in ``feature_names`` order.
- Parquet (``.parquet``, ``.pq``): columns selected by name like a CSV with a header
  (pyarrow is imported only when a Parquet file is read).
- NumPy (``.npy``): a 2-D array (or 1-D for a single feature) with one column per feature.
- Tensors (``shape`` given, a ``spec.schema.shape`` monitor, DESIGN §8): a ``.npy`` of shape
  ``[n, *shape]`` (images, embeddings), returned as an (n, *shape) float64 array.

The result is a C-contiguous ``float64`` array of shape (rows, features), holding bit for bit
the numbers the same text gives when it arrives as JSON: CSV numbers are parsed with a
correctly rounded parser (Python's `float`, as `json.loads` uses — pandas' default C parser
is faster but can be one unit in the last place off, which made identical values look
different to the drift tests) and Parquet/.npy hold the doubles themselves. Every problem
raises `DataError` with a message naming the file and what is wrong (missing file,
missing columns, wrong column count, non-numeric values, empty table).

Categorical features declared with a value list (``categorical={"sex": ["F", "M"]}``, the
schema's block) may hold the values themselves (strings, or the listed numbers): they are
mapped to the codes 0..k-1 in list order by the same code that decodes requests
(`vigil.instances`), and a value outside the list is a `DataError`. Missing cells (empty,
``NA``, ``NaN``, ``null``, a Parquet null) are an error with ``missing="raise"`` (the default)
and NaN with ``missing="keep"``: the caller decides — drift fitting and training drop the rows
holding one (`complete_rows`) and say how many; baseline profiling counts them.
CSV and .npy need only the standard library and numpy (pandas, for Parquet with pyarrow, is
imported only then): no TensorFlow.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np

from vigil.errors import VigilError
from vigil.events import PayloadError
from vigil.instances import InputSchema, decode_array

_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_NPY = (".npy",)
#: CSV cells read as a missing value (compared lower-cased, stripped).
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none"})


class DataError(VigilError, ValueError):
    """Reference data that cannot be used, with a message naming the file and the problem."""


def _local(path: Union[str, os.PathLike]) -> Path:
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(text)


def load_npy(path: Path) -> np.ndarray:
    """A .npy file of numbers (never unpickled); a `DataError` names the file otherwise."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric .npy array ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: .npy array has dtype {arr.dtype}, expected numbers")
    return arr


def require_parquet(path: Path) -> None:
    """Parquet is read by pandas with pyarrow, imported only when a Parquet file is read."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401  (pandas' parquet engine)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pandas and pyarrow (pip install pyarrow)") from None


def _check(arr: np.ndarray, path: Path, names: Optional[Sequence[str]], missing: str = "raise") -> np.ndarray:
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D table of features, got an array of shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: the table has no rows")
    if names is not None and arr.shape[1] != len(names):
        raise DataError(f"{path}: has {arr.shape[1]} columns but {len(names)} features are declared "
                        f"({', '.join(names)})")
    bad = ~np.isfinite(arr) if missing == "raise" else np.isinf(arr)
    if bad.any():
        cols = sorted(set(np.nonzero(bad)[1].tolist()))
        where = [names[c] if names else str(c) for c in cols]
        raise DataError(f"{path}: {int(bad.sum())} missing or non-finite values in column(s) {', '.join(where)}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _numbers(column):
    """A column as float64; text is parsed by Python's `float` (correctly rounded, as `json.loads` does)."""
    import pandas as pd

    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    return pd.Series([float(v) for v in column], index=column.index, dtype=np.float64)


def _select(frame, path: Path, names: Optional[Sequence[str]], text: frozenset = frozenset()) -> np.ndarray:
    """Columns `names` of a DataFrame as float64 (all columns when names is None); the columns at
    positions `text` (categorical value lists) as objects, nulls as None, for `_categories`."""
    import pandas as pd

    if names is not None:
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the file has "
                            f"{', '.join(columns) or 'no columns'}")
        frame = frame[list(names)]
    if text:
        out = np.empty(frame.shape, dtype=object)
        for j, c in enumerate(frame.columns):
            col = frame[c]
            if j in text:
                out[:, j] = [None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v
                             for v in col.tolist()]
            else:
                out[:, j] = _select(frame[[c]], path, None)[:, 0].tolist()
        return out
    try:
        numeric = frame.apply(_numbers)
    except (ValueError, TypeError):
        bad = [str(c) for c in frame.columns if pd.to_numeric(frame[c], errors="coerce").isna().any()
               and not frame[c].isna().all()]
        raise DataError(f"{path}: non-numeric values in column(s) {', '.join(bad) or '?'}; reference data "
                        "must be numbers (encode categorical features as integers 0..n-1)") from None
    return numeric.to_numpy(dtype=np.float64)


def _open_text(path: Path):
    """A CSV file as text, decompressed by its suffix (.gz, .bz2, .zip: its first member)."""
    lower = path.name.lower()
    if lower.endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    if lower.endswith(".bz2"):
        return bz2.open(path, "rt", newline="")
    if lower.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        return io.TextIOWrapper(archive.open(archive.namelist()[0]), newline="")
    return open(path, newline="")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(text: str) -> float:
    return np.nan if text.strip().lower() in MISSING_TEXT else float(text)


def _read_csv(path: Path, sep: str, names: Optional[Sequence[str]], text: frozenset = frozenset()) -> np.ndarray:
    """A CSV's columns `names` (by header), or all of them (no header row), parsed by Python's `float`.

    `float` rounds correctly, as `json.loads` does, so a value reads as the same double it is
    when it arrives in an event. (The standard library's reader, not pandas: the drift
    service then does not load pandas, 70 MB of its memory budget.) The columns at positions
    `text` (categorical value lists) stay text (None when missing), for `_categories`.
    """
    with _open_text(path) as f:
        rows = [row for row in csv.reader(f, delimiter=sep) if row]
    if not rows:
        raise DataError(f"{path}: the file is empty")
    first = [v.strip() for v in rows[0]]
    numbers = all(_is_number(v) for v in first)
    headerless = numbers or (text and names is not None and len(first) == len(names) and not set(names) & set(first))
    header = None if headerless else [v.strip() for v in rows.pop(0)]
    width = len(header) if header else len(rows[0])
    ragged = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if ragged is not None:
        raise DataError(f"{path}: row {ragged + 1 + bool(header)} has {len(rows[ragged])} fields, expected {width}")
    if header is not None and names is not None:
        missing = [n for n in names if n not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the file has "
                            f"{', '.join(header) or 'no columns'}")
        picked = [header.index(n) for n in names]
    else:
        picked = list(range(width))
    out = np.empty((len(rows), len(picked)), dtype=object if text else np.float64)
    bad: list[str] = []
    for j, c in enumerate(picked):
        if j in text:
            out[:, j] = [row[c].strip() or None for row in rows]
            continue
        try:
            out[:, j] = [_cell(row[c]) for row in rows]
        except ValueError:
            bad.append(header[c] if header else str(c))
    if bad:
        raise DataError(f"{path}: non-numeric values in column(s) {', '.join(bad)}; reference data "
                        "must be numbers (declare a categorical feature's values in schema.categorical "
                        "to read its strings, or encode it as integers 0..n-1)")
    return out


def _value_lists(names: Optional[Sequence[str]], categorical: Optional[Mapping[Any, Any]]) -> InputSchema:
    """The schema's categorical features that have a value list (the only ones whose values a file may hold)."""
    schema = InputSchema.from_settings(names, categorical or {})
    return InputSchema(schema.feature_names, {j: c for j, c in schema.categorical.items() if isinstance(c, tuple)})


def _categories(arr: np.ndarray, path: Path, schema: InputSchema) -> np.ndarray:
    """Value-list columns of a table read as codes (`vigil.instances`, as requests are); a value
    outside its list is a `DataError` naming the column and the value."""
    if not schema.categorical or arr.ndim != 2:
        return arr  # (`_check` says what is wrong with the shape)
    out = np.empty(arr.shape, dtype=np.float64)
    for j in range(arr.shape[1]):
        cats = schema.categorical.get(j)
        if cats is None:
            out[:, j] = arr[:, j]
            continue
        column = arr[:, j:j + 1]
        if column.dtype == object:  # "NA", "null" … are missing unless they are one of the categories
            listed = set(cats) if isinstance(cats, tuple) else set()
            column = np.array([[None if isinstance(v, str) and v.lower() in MISSING_TEXT and v not in listed else v]
                               for v in column[:, 0]], dtype=object).reshape(-1, 1)
        try:
            decoded = decode_array(column, InputSchema(None, {0: cats}))
        except PayloadError as exc:
            raise DataError(f"{path}: column {_name(schema, j)}: {exc.message}") from None
        if decoded.unseen.any():
            i = int(np.nonzero(decoded.unseen[:, 0])[0][0])
            raise DataError(f"{path}: column {_name(schema, j)} holds {arr[i, j]!r} (row {i + 1}), which is not one "
                            f"of its declared categories {list(cats) if isinstance(cats, tuple) else cats}; add it "
                            "to schema.categorical")
        out[:, j] = decoded.rows[:, 0]
    return out


def _name(schema: InputSchema, j: int) -> str:
    return schema.feature_names[j] if schema.feature_names else str(j)


def complete_rows(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(the rows of `x` holding no missing value, how many were dropped): what drift fitting and
    training use of a reference read with ``missing="keep"``."""
    keep = ~np.isnan(x).any(axis=1)
    dropped = int(x.shape[0] - keep.sum())
    return (np.ascontiguousarray(x[keep]) if dropped else x), dropped


def _check_tensors(arr: np.ndarray, path: Path, shape: Sequence[int]) -> np.ndarray:
    expected = [int(d) for d in shape]
    if list(arr.shape[1:]) != expected:
        raise DataError(f"{path}: expected instances of shape {expected} (an array of shape [n, "
                        f"{', '.join(map(str, expected))}]), got an array of shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: the array holds no instances")
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} instance(s) hold missing or non-finite values "
                        f"(the first is instance {int(np.argmax(bad))})")
    return np.ascontiguousarray(arr, dtype=np.float64)


def load_table(path: Union[str, os.PathLike], feature_names: Optional[Sequence[str]] = None,
               categorical: Optional[Mapping[Any, Any]] = None, *, shape: Optional[Sequence[int]] = None,
               missing: Literal["raise", "keep"] = "raise") -> np.ndarray:
    """The reference table at `path` as a (rows, features) float64 array, or with `shape` (a tensor
    schema) the (n, *shape) array of a ``.npy``; see the module docstring.

    `categorical` is the schema's block (keys feature names or column indices); `missing`
    ``"keep"`` returns missing cells as NaN instead of raising."""
    p = _local(path)
    names = list(feature_names) if feature_names else None
    schema = _value_lists(names, categorical)
    text = frozenset(schema.categorical)
    if not p.exists():
        raise DataError(f"{p}: reference data file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV, Parquet or .npy file")
    suffix = "".join(p.suffixes[-2:]).lower() if len(p.suffixes) > 1 else p.suffix.lower()
    lower = p.name.lower()
    try:
        if lower.endswith(_NPY):
            arr = load_npy(p)
            if shape is not None:
                return _check_tensors(arr, p, shape)
            arr = arr.astype(np.float64, copy=False)
            return _check(_categories(arr, p, schema), p, names, missing)
        if shape is not None:
            raise DataError(f"{p}: reference data for a shape {list(shape)} (tensor) schema must be a .npy "
                            f"array of shape [n, {', '.join(map(str, shape))}]")
        if lower.endswith(_PARQUET):
            require_parquet(p)
            import pandas as pd

            return _check(_categories(_select(pd.read_parquet(p), p, names, text), p, schema), p, names, missing)
        if lower.endswith(_CSV):
            sep = "\t" if lower.endswith(".tsv") else ","
            return _check(_categories(_read_csv(p, sep, names, text), p, schema), p, names, missing)
    except DataError:
        raise
    except (OSError, ValueError, csv.Error, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: cannot read reference data: {exc}") from None
    raise DataError(f"{p}: unknown reference data format {suffix or '(no extension)'!r}; "
                    "use .csv, .parquet or .npy")
