"""The current data of a report, decoded as the live services decode request bodies.

Whatever `--current` is, its rows become inference request bodies and go through
`vigil.instances.decode_table`, the decoder of every service — so string categories map to
the same codes, ``null``/NaN/empty cells are missing values, unseen categories and
wrong-typed values are flagged the way the quality service flags them (``strict=False``):

- a **file**: CSV (a header row naming the features; other columns, e.g. a label, are
  ignored) or Parquet, one named row per line, or ``.npy`` (one column per feature);
- a **capture directory** (DESIGN §13, `vigil.capture.reader`): the ``data`` of every
  request record, one body per event, in the order captured.

`Current.drift_rows` is what the drift service checks: categories as codes (an unseen
category in its own bin, `Decoded.coded`) without the rows holding a missing value, which
the service skips too.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil.data import DataError, load_npy, require_parquet
from vigil.instances import Decoded, InputSchema, decode_table

#: CSV cells read as a missing value (lower-cased, stripped).
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none"})


@dataclass
class Current:
    decoded: list[Decoded]  # one per body (a file is one body)
    schema: InputSchema
    what: str  # "file" or "capture"
    events: int  # bodies read

    @property
    def rows(self) -> int:
        return sum(len(d) for d in self.decoded)

    def drift_rows(self) -> tuple[np.ndarray, int]:
        """(complete rows, coded, as the drift service checks them; how many rows were skipped)."""
        n = self.schema.n_features or 0
        coded = [d.coded(self.schema) for d in self.decoded]
        rows = np.concatenate(coded) if coded else np.empty((0, n))
        keep = ~np.isnan(rows).any(axis=1)
        return rows[keep], int((~keep).sum())


def _cell(text: str) -> Any:
    """A CSV cell as the JSON value it would be in a request: a number, null, or the string."""
    stripped = text.strip()
    if stripped.lower() in MISSING_TEXT:
        return None
    try:
        value = float(stripped)
    except ValueError:
        return stripped
    return value if math.isfinite(value) else stripped  # infinity: the decoder's wrong type


def _select(header: list[str], names: tuple[str, ...], path: Path) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(header) or 'none'}")
    return [header.index(n) for n in names]


def _csv_body(path: Path, names: tuple[str, ...]) -> dict:
    sep = "\t" if path.name.lower().endswith(".tsv") else ","
    with open(path, newline="", encoding="utf-8") as f:
        lines = [row for row in csv.reader(f, delimiter=sep) if row]
    if not lines:
        raise DataError(f"{path}: the file is empty")
    first = [_cell(v) for v in lines[0]]
    if all(isinstance(v, float) for v in first):  # no header: one column per feature, in order
        if len(lines[0]) != len(names):
            raise DataError(f"{path}: has {len(lines[0])} columns and no header, but {len(names)} features "
                            f"are declared ({', '.join(names)})")
        return {"instances": [[_cell(v) for v in row] for row in lines]}
    cols = _select([v.strip() for v in lines[0]], names, path)
    rows = []
    for i, row in enumerate(lines[1:], 2):
        if len(row) != len(lines[0]):
            raise DataError(f"{path}: row {i} has {len(row)} fields, expected {len(lines[0])}")
        rows.append({name: _cell(row[c]) for name, c in zip(names, cols, strict=True)})
    if not rows:
        raise DataError(f"{path}: the table has no rows")
    return {"instances": rows}


def _parquet_body(path: Path, names: tuple[str, ...]) -> dict:
    require_parquet(path)
    import pandas as pd

    frame = pd.read_parquet(path)
    frame.columns = [str(c) for c in frame.columns]
    _select(list(frame.columns), names, path)
    records = frame[list(names)].astype(object).where(frame[list(names)].notna(), None).to_dict("records")
    return {"instances": records}


def _npy_body(path: Path) -> dict:
    arr = load_npy(path)
    arr = arr.astype(np.float64).reshape(len(arr), -1)  # 1-D: one feature
    return {"instances": [[None if np.isnan(v) else float(v) for v in row] for row in arr]}


def _capture_bodies(path: Path) -> list[Any]:
    try:
        from vigil.capture.reader import iter_records
    except ImportError:
        raise DataError(f"{path}: reading capture directories needs vigil.capture") from None
    bodies = [record.json() for record in iter_records(str(path), kinds=["request"])]
    if not bodies:
        raise DataError(f"{path}: no captured request records (capture-*.jsonl|.parquet) found")
    return bodies


def _decode(body: Any, schema: InputSchema, where: str) -> Decoded:
    from vigil.events import PayloadError

    try:
        return decode_table(body, schema, strict=False)
    except PayloadError as exc:
        raise DataError(f"{where}: {exc}") from None


def load_current(path: str, schema: InputSchema) -> Current:
    """The current data at `path` (a file or a capture directory), decoded (see the module docstring)."""
    p = Path(path[len("file://"):] if path.startswith("file://") else path)
    names = schema.feature_names or ()
    if not p.exists():
        raise DataError(f"{p}: current data not found")
    if p.is_dir():
        bodies = _capture_bodies(p)
        return Current([_decode(b, schema, f"{p}: captured request {i + 1}") for i, b in enumerate(bodies)],
                       schema, "capture", len(bodies))
    lower = p.name.lower()
    if lower.endswith((".csv", ".tsv", ".txt")):
        body = _csv_body(p, names)
    elif lower.endswith((".parquet", ".pq")):
        body = _parquet_body(p, names)
    elif lower.endswith(".npy"):
        body = _npy_body(p)
    else:
        raise DataError(f"{p}: unknown data format {p.suffix or '(no extension)'!r}; use .csv, .parquet, .npy "
                        "or a capture directory")
    decoded = _decode(body, schema, str(p))
    if not len(decoded):
        raise DataError(f"{p}: the table has no rows")
    return Current([decoded], schema, "file", 1)
