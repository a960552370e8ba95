"""A detector's history of window checks: a bounded JSON-lines file in its state dir (DESIGN §10).

`History(path, max_bytes)` appends one JSON object per line (`append`), newest last, and
reads the last `n` back (`tail`). The file stays near its bound: when an append would
take it past `max_bytes` (default `MAX_BYTES`, 4 MiB), the older half of the lines is
dropped first (the newer half rewritten to a temporary file and renamed over the old one,
so a crash leaves either the old or the new file, never a torn one). A torn or
unreadable last line (a crash mid-append) is skipped on read and cut off before the next
append. Drift and quality append one line per window check and serve the tail at
``GET /history?limit=N`` as ``{"checks": [...]}`` (`history_api`); `vigil status --history N` collects them.

Appends are one ``write`` of a whole line on a file opened in append mode; the file is
not fsynced (the history is a record, not a checkpoint: a node's power loss may lose the
last lines). An `OSError` (disk full, read-only) propagates to the caller, which counts
it and keeps running.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("vigil.detector")

#: Default size bound of a history file.
MAX_BYTES = 4 * 1024 * 1024
#: The file name in a detector's state dir.
FILE_NAME = "history.jsonl"
#: Most entries `tail` returns (and `GET /history` serves) at once.
MAX_TAIL = 10_000


def iso_utc(ts: float) -> str:
    """A Unix time as the history's and /status's UTC time (``2026-01-02T03:04:05.678Z``)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class History:
    def __init__(self, path: str | os.PathLike, max_bytes: int = MAX_BYTES):
        self.path = Path(path)
        if max_bytes < 1024:
            raise ValueError(f"a history bound of {max_bytes} bytes is too small (at least 1024)")
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size: Optional[int] = None
        self._repair()

    @classmethod
    def in_dir(cls, state_dir: str | os.PathLike, max_bytes: int = MAX_BYTES) -> History:
        return cls(Path(state_dir) / FILE_NAME, max_bytes)

    def _repair(self) -> None:
        """Cut a torn last line (no trailing newline) left by a crash mid-append."""
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    self._size = 0
                    return
                f.seek(max(0, size - 65536))
                tail = f.read()
                if tail.endswith(b"\n"):
                    self._size = size
                    return
                cut = tail.rfind(b"\n")
                keep = (size - len(tail) + cut + 1) if cut >= 0 else 0
                if cut < 0 and size > len(tail):  # one huge torn line: find its start the slow way
                    f.seek(0)
                    data = f.read()
                    keep = data.rfind(b"\n") + 1
                f.truncate(keep)
                self._size = keep
                log.warning("history %s: dropped a torn last line (%d bytes)", self.path, size - keep)
        except FileNotFoundError:
            self._size = 0

    def append(self, entry: dict[str, Any]) -> None:
        """Add one check (a JSON-serialisable dict) as the newest line."""
        line = (json.dumps(_clean(entry), separators=(",", ":"), allow_nan=False) + "\n").encode()
        if self._size is None:
            self._repair()
        assert self._size is not None
        if self._size + len(line) > self.max_bytes:
            self._halve(len(line))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            self._size = None  # unknown: re-read (and repair) before the next append
            raise
        finally:
            os.close(fd)
        self._size += len(line)

    def _halve(self, incoming: int) -> None:
        """Drop the older half of the lines, and halve again while the rest and `incoming` still exceed the bound."""
        keep = self._lines()
        keep = keep[len(keep) // 2:]
        while keep and sum(map(len, keep)) + incoming > self.max_bytes:
            keep = keep[(len(keep) + 1) // 2:]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self._size = sum(map(len, keep))

    def _lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                return [x for x in f.readlines() if x.endswith(b"\n")]
        except FileNotFoundError:
            return []

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last `n` checks (at most `MAX_TAIL`), oldest first; unreadable lines are skipped."""
        n = max(0, min(int(n), MAX_TAIL))
        if n == 0:
            return []
        out: deque[dict[str, Any]] = deque(maxlen=n)
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        continue
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        continue
                    if isinstance(entry, dict):
                        out.append(entry)
        except FileNotFoundError:
            return []
        return list(out)

    def __len__(self) -> int:
        return len(self._lines())


def _clean(value: Any) -> Any:
    """A JSON value: numpy scalars and arrays as plain numbers and lists, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
