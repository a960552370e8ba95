"""The quality window: check counts of the instances since the last check, not the instances.

Checks are per instance, so a window only needs the sums of its instances' flags
(`checks.Counts`). Windows are tumbling: every `size` instances make one window, checked
once — a batch crossing the boundary is split, so each window holds exactly `size`
instances. With `max_age` > 0, a window whose oldest instance is `max_age` seconds old is
checked with what it holds (at least one instance), so a quiet model still gets a report.
On a clean shutdown the partial window's counts are saved (`save`, ``window.json`` in the
state dir) and the next start continues it (`restore`, which removes the file, so a crash
after it loses that partial window rather than counting it twice); a killed process loses
its partial window. Finished reports are in the history file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vigil_detectors.quality.checks import Compiled, Counts, count

log = logging.getLogger("vigil.quality")
WINDOW_FILE = "window.json"


@dataclass
class _Rows:
    """A slice of a `vigil.instances.Decoded` (the attributes `checks.count` reads)."""

    rows: np.ndarray
    missing: np.ndarray
    absent: np.ndarray
    unseen: np.ndarray
    wrong_type: np.ndarray
    extra: list

    @classmethod
    def of(cls, d: Any, start: int, stop: int) -> _Rows:
        return cls(d.rows[start:stop], d.missing[start:stop], d.absent[start:stop], d.unseen[start:stop],
                   d.wrong_type[start:stop], list(d.extra[start:stop]))


class QualityWindow:
    def __init__(self, size: int, compiled: Compiled):
        self.size = int(size)
        self.compiled = compiled
        self.counts = Counts.zero(compiled.n_features)
        self.since: Optional[float] = None  # arrival of the oldest instance in the window
        self.seen = 0

    @property
    def fill(self) -> int:
        return self.counts.instances

    def add(self, decoded: Any, now: float) -> tuple[Counts, list[Counts]]:
        """Count a decoded batch in; return its own counts and those of the windows it completed."""
        n = int(decoded.rows.shape[0])
        self.seen += n
        done: list[Counts] = []
        batch = Counts.zero(self.compiled.n_features)
        i = 0
        while i < n:
            if self.since is None:
                self.since = now
            take = min(self.size - self.fill, n - i)
            part = decoded if (i == 0 and take == n) else _Rows.of(decoded, i, i + take)
            part_counts = count(part, self.compiled)
            batch = batch + part_counts
            self.counts = self.counts + part_counts
            i += take
            if self.fill == self.size:
                done.append(self._close())
        return batch, done

    def age(self, now: float) -> float:
        return 0.0 if self.since is None else max(0.0, now - self.since)

    def due(self, now: float, max_age: float) -> Optional[Counts]:
        """The window's counts when maxAge says to check it now (then it starts anew), else None."""
        if max_age <= 0 or self.since is None or self.fill == 0 or now - self.since < max_age:
            return None
        return self._close()

    def _close(self) -> Counts:
        out, self.counts, self.since = self.counts, Counts.zero(self.compiled.n_features), None
        return out

    # -- across a clean restart --
    def save(self, state_dir: str) -> None:
        """Write the partial window's counts to ``<state_dir>/window.json`` (atomically)."""
        doc = {"version": 1, "size": self.size, "features": list(self.compiled.names), "since": self.since,
               "seen": self.seen, "counts": self.counts.to_json()}
        path = Path(state_dir) / WINDOW_FILE
        tmp = path.with_name(f".{WINDOW_FILE}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def restore(self, state_dir: str) -> bool:
        """Continue the window `save` left (same size and features); the file is removed either way."""
        path = Path(state_dir) / WINDOW_FILE
        if not path.exists():
            return False
        try:
            doc = json.loads(path.read_text())
            if doc.get("size") != self.size or doc.get("features") != list(self.compiled.names):
                log.warning("quality: the saved window (%s instances of %s) does not fit this window; starting anew",
                            doc.get("size"), doc.get("features"))
                return False
            counts = Counts.from_json(doc["counts"], self.compiled.n_features)
            if counts.instances >= self.size:
                return False
            self.counts, self.since, self.seen = counts, doc.get("since"), int(doc.get("seen", counts.instances))
            return True
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("quality: cannot read the saved window %s (%s); starting anew", path, exc)
            return False
        finally:
            path.unlink(missing_ok=True)
