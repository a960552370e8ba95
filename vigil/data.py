"""Reading reference (training / baseline) data into a numeric feature matrix.

`load_table(path, feature_names)` is what the drift detector (fitting at start-up),
`vigil train` and the demo use to read the `reference` of a `ModelMonitor`:

- CSV (``.csv``, ``.csv.gz``, ``.tsv``, ``.txt``): with a header row, the columns named by
  ``feature_names`` are selected in that order (other columns, e.g. a label, are ignored);
  without a header (the first row is all numbers) the file must have exactly one column
  per feature, in ``feature_names`` order.
- Parquet (``.parquet``, ``.pq``): columns selected by name like a CSV with a header
  (pyarrow is imported only when a Parquet file is read).
- NumPy (``.npy``): a 2-D array (or 1-D for a single feature) with one column per feature.

The result is a C-contiguous ``float64`` array of shape (rows, features), holding bit for bit
the numbers the same text gives when it arrives as JSON: CSV numbers are parsed with a
correctly rounded (round-trip) parser — pandas' default C parser is faster but can be one
unit in the last place off, which made identical values look different to the drift
tests — and Parquet/.npy hold the doubles themselves. Every problem
raises `DataError` with a message naming the file and what is wrong (missing file,
missing columns, wrong column count, non-numeric or missing values, empty table).
Only numpy and pandas are used: no TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_NPY = (".npy",)


class DataError(ValueError):
    """Reference data that cannot be used, with a message naming the file and the problem."""


def _local(path: Union[str, os.PathLike]) -> Path:
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(text)


def _check(arr: np.ndarray, path: Path, names: Optional[Sequence[str]]) -> np.ndarray:
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D table of features, got an array of shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: the table has no rows")
    if names is not None and arr.shape[1] != len(names):
        raise DataError(f"{path}: has {arr.shape[1]} columns but {len(names)} features are declared "
                        f"({', '.join(names)})")
    bad = ~np.isfinite(arr)
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


def _select(frame, path: Path, names: Optional[Sequence[str]]) -> np.ndarray:
    """Columns `names` of a DataFrame as float64 (all columns when names is None)."""
    import pandas as pd

    if names is not None:
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the file has "
                            f"{', '.join(columns) or 'no columns'}")
        frame = frame[list(names)]
    try:
        numeric = frame.apply(_numbers)
    except (ValueError, TypeError):
        bad = [str(c) for c in frame.columns if pd.to_numeric(frame[c], errors="coerce").isna().any()
               and not frame[c].isna().all()]
        raise DataError(f"{path}: non-numeric values in column(s) {', '.join(bad) or '?'}; reference data "
                        "must be numbers (encode categorical features as integers 0..n-1)") from None
    return numeric.to_numpy(dtype=np.float64)


def _first_row_is_header(path: Path, sep: str) -> bool:
    import pandas as pd

    first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    if first.empty:
        raise DataError(f"{path}: the file is empty")
    for value in first.iloc[0].tolist():
        try:
            float(value)
        except (TypeError, ValueError):
            return True
    return False


def load_table(path: Union[str, os.PathLike], feature_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The reference table at `path` as a (rows, features) float64 array; see the module docstring."""
    import pandas as pd

    p = _local(path)
    names = list(feature_names) if feature_names else None
    if not p.exists():
        raise DataError(f"{p}: reference data file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV, Parquet or .npy file")
    suffix = "".join(p.suffixes[-2:]).lower() if len(p.suffixes) > 1 else p.suffix.lower()
    lower = p.name.lower()
    try:
        if lower.endswith(_NPY):
            try:
                arr = np.load(p, allow_pickle=False)
            except ValueError as exc:
                raise DataError(f"{p}: not a numeric .npy array ({exc})") from None
            if arr.dtype.kind not in "biuf":
                raise DataError(f"{p}: .npy array has dtype {arr.dtype}, expected numbers")
            return _check(arr.astype(np.float64, copy=False), p, names)
        if lower.endswith(_PARQUET):
            try:
                import pyarrow  # noqa: F401  (pandas' parquet engine, imported only here)
            except ImportError:
                raise DataError(f"{p}: reading Parquet needs pyarrow (pip install pyarrow)") from None
            return _check(_select(pd.read_parquet(p), p, names), p, names)
        if lower.endswith(_CSV):
            sep = "\t" if lower.endswith(".tsv") else ","
            if _first_row_is_header(p, sep):
                return _check(_select(pd.read_csv(p, sep=sep, float_precision="round_trip"), p, names), p, names)
            return _check(_select(pd.read_csv(p, sep=sep, header=None, float_precision="round_trip"), p, None),
                          p, names)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: the file is empty") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{p}: cannot read reference data: {exc}") from None
    raise DataError(f"{p}: unknown reference data format {suffix or '(no extension)'!r}; "
                    "use .csv, .parquet or .npy")
