"""Read a capture location: its files in the order they were written, and their records.

`capture_files(location)` lists the ``capture-*.jsonl|.parquet`` files under a directory
(subdirectories too, e.g. one per logger replica) or a single such file, sorted by name
(start time, then sequence number); `iter_records(location, kinds=...)` yields their
`Record`s. A location is a local path, ``file://`` or an fsspec URL (``s3://``: the
``storage`` extra). A JSONL file the logger is still writing may end in a partial line, and a
Parquet file it is still writing has no footer yet: both are what a reader sees mid-write,
so the partial line, or the unfinished file, is skipped; anything else unreadable is a
`CaptureError` naming the file (and line).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator
from typing import Optional

from vigil.capture.record import NAME, CaptureError, Record
from vigil.capture.writer import CaptureUnavailable, filesystem


def _fs(location: str):
    try:
        return filesystem(location)
    except CaptureUnavailable as e:
        raise CaptureError(str(e)) from None


def capture_files(location: str) -> list[str]:
    """The capture files at `location` (a directory or one file), in the order they were written."""
    fs, root = _fs(location)
    if not fs.exists(root):
        raise CaptureError(f"{location}: no such capture location")
    if fs.isfile(root):
        if not NAME.match(posixpath.basename(root)):
            raise CaptureError(f"{location}: not a capture file (capture-<time>-<seq>.jsonl|.parquet)")
        return [root]
    found = [p for p in fs.find(root) if NAME.match(posixpath.basename(p))]
    return sorted(found, key=lambda p: (posixpath.basename(p), p))


def _jsonl(fs, path: str) -> Iterator[Record]:
    with fs.open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return  # the writer's partial last line
            if not line.strip():
                continue
            try:
                yield Record.from_row(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                raise CaptureError(f"{path}:{n}: not a capture record: {type(e).__name__}: {e}") from None


def _parquet(fs, path: str) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CaptureError(f"{path}: reading Parquet captures needs pyarrow (pip install pyarrow)") from None
    with fs.open(path, "rb") as f:
        size = fs.size(path)
        if size < 12:
            return  # just opened by the writer
        f.seek(size - 4)
        if f.read(4) != b"PAR1":
            return  # still being written: no footer until the writer closes it
        f.seek(0)
        try:
            table = pq.read_table(f)
        except Exception as e:  # noqa: BLE001 - pyarrow's errors are many
            raise CaptureError(f"{path}: not a readable Parquet capture: {e}") from None
    for n, row in enumerate(table.to_pylist(), 1):
        try:
            yield Record.from_row(row)
        except (ValueError, KeyError, TypeError) as e:
            raise CaptureError(f"{path}: row {n}: not a capture record: {type(e).__name__}: {e}") from None


def iter_records(location: str, kinds: Optional[Iterable[str]] = None) -> Iterator[Record]:
    """Every record at `location`, file by file in the order written (optionally only these kinds)."""
    wanted = set(kinds) if kinds is not None else None
    fs, _ = _fs(location)
    for path in capture_files(location):
        read = _parquet if path.endswith(".parquet") else _jsonl
        for record in read(fs, path):
            if wanted is None or record.kind in wanted:
                yield record
