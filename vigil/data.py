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
- Tensors (``shape`` given, a ``spec.schema.shape`` monitor, DESIGN §8): a ``.npy`` of shape
  ``[n, *shape]`` (images, embeddings), returned as an (n, *shape) float64 array.

The result is a C-contiguous ``float64`` array of shape (rows, features), holding bit for bit
the numbers the same text gives when it arrives as JSON: CSV numbers are parsed with a
correctly rounded parser (Python's `float`, as `json.loads` uses — pandas' default C parser
is faster but can be one unit in the last place off, which made identical values look
different to the drift tests) and Parquet/.npy hold the doubles themselves. Every problem
raises `DataError` with a message naming the file and what is wrong (missing file,
missing columns, wrong column count, non-numeric or missing values, empty table).
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
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vigil.errors import VigilError

_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_NPY = (".npy",)


class DataError(VigilError, ValueError):
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


def _read_csv(path: Path, sep: str, names: Optional[Sequence[str]]) -> np.ndarray:
    """A CSV's columns `names` (by header), or all of them (no header row), parsed by Python's `float`.

    `float` rounds correctly, as `json.loads` does, so a value reads as the same double it is
    when it arrives in an event. (The standard library's reader, not pandas: the drift
    service then does not load pandas, 70 MB of its memory budget.)
    """
    with _open_text(path) as f:
        rows = [row for row in csv.reader(f, delimiter=sep) if row]
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header = None if all(_is_number(v) for v in rows[0]) else [v.strip() for v in rows.pop(0)]
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
    out = np.empty((len(rows), len(picked)), dtype=np.float64)
    bad: list[str] = []
    for j, c in enumerate(picked):
        try:
            out[:, j] = [float(row[c]) if row[c].strip() else np.nan for row in rows]
        except ValueError:
            bad.append(header[c] if header else str(c))
    if bad:
        raise DataError(f"{path}: non-numeric values in column(s) {', '.join(bad)}; reference data "
                        "must be numbers (encode categorical features as integers 0..n-1)")
    return out


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
               shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """The reference table at `path` as a (rows, features) float64 array, or with `shape` (a tensor
    schema) the (n, *shape) array of a ``.npy``; see the module docstring."""
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
            if shape is not None:
                return _check_tensors(arr, p, shape)
            return _check(arr.astype(np.float64, copy=False), p, names)
        if shape is not None:
            raise DataError(f"{p}: reference data for a shape {list(shape)} (tensor) schema must be a .npy "
                            f"array of shape [n, {', '.join(map(str, shape))}]")
        if lower.endswith(_PARQUET):
            try:
                import pyarrow  # noqa: F401  (pandas' parquet engine, imported only here)
            except ImportError:
                raise DataError(f"{p}: reading Parquet needs pyarrow (pip install pyarrow)") from None
            import pandas as pd

            return _check(_select(pd.read_parquet(p), p, names), p, names)
        if lower.endswith(_CSV):
            sep = "\t" if lower.endswith(".tsv") else ","
            return _check(_read_csv(p, sep, names), p, names)
    except DataError:
        raise
    except (OSError, ValueError, csv.Error, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: cannot read reference data: {exc}") from None
    raise DataError(f"{p}: unknown reference data format {suffix or '(no extension)'!r}; "
                    "use .csv, .parquet or .npy")
