"""The drift window: which instances a check looks at, and how the window survives a restart.

`DriftWindow` is a preallocated numpy ring of `size` rows; appending a batch is a slice
copy (no per-value Python work).

- **tumbling**: disjoint windows of `size` instances; each full window is checked once and
  the window starts empty again. A batch that crosses a window boundary is split, so
  every window is exactly `size` instances.
- **sliding**: the last `size` instances; once the window is full it is checked every
  `step` new instances. A batch bringing more than `step` instances triggers one check of
  the latest window (not one per step it crossed).
- **maxAge**: when the oldest instance not yet covered by a check is older than
  `max_age` seconds, whatever the window holds is checked, so a quiet model still gets a
  verdict — provided it holds at least `min_age_rows` = min(size, 30) instances (fewer
  make a KS / chi-squared test meaningless; until then the window keeps filling and is
  checked as soon as it reaches that many). In tumbling mode such an early check closes
  the window (it counts as one window); in sliding mode the window keeps its instances.

`WindowStore` makes the window survive a crash (SIGKILL included) without slowing ingest:

- every accepted batch is appended to a log file (`window-<gen>.log`: a 16-byte header,
  timestamp and row count, then the float64 rows) with one `os.write` *before* the event
  is acknowledged. A killed process loses nothing the kernel has: an event answered 2xx
  is in the log. There is no fsync on this path, so a power loss of the whole node may
  lose the last seconds; a process or container crash does not.
- after every check (and on shutdown) the window is snapshotted: `window-<gen+1>.npy`
  (the rows; none when the window is empty, as a tumbling one is right after its check) and
  `meta-<gen+1>.json` (window position, ages, counters, last result), each written to a
  temporary file and renamed to its new name; the meta file is the commit point, naming the
  generation whose log continues the snapshot. Then a fresh log starts and the old files go.
  No rename ever replaces an existing file: on ext4 that forces the new file's data out to
  disk first (``auto_da_alloc``), ~3 ms of blocking I/O per check on the event loop (issue 13).
  (``meta.json``, the single commit file of earlier versions, is still read.)
- under JetStream each batch's stream sequence goes into the same write, as a marker record
  after the rows (a header whose row count is minus the sequence), and `snapshot` carries
  the last `HELD_SEQUENCES` of them into the meta file: `holds(seq)` says whether the
  checkpoint has an event, so after a restart a redelivered one (JetStream redelivers what
  was not acknowledged, in any order) is acknowledged without being counted again.
- on start, `restore` loads the snapshot named by the newest readable meta file, replays its log (ignoring
  a torn last record), and returns any windows the replay completed so they get checked.
  A window of another size or mode is rebuilt by replaying the saved instances; a
  snapshot with another feature count is discarded with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger("vigil.drift")

#: Fewest instances a maxAge check will test (capped at the window size).
MIN_AGE_CHECK_ROWS = 30

#: Stream sequences remembered across a snapshot: far more than a consumer ever has unacknowledged
#: (the frame acknowledges each event of a batch as soon as it is kept).
HELD_SEQUENCES = 4096

_HEADER = struct.Struct("<dq")  # timestamp (unix seconds), number of rows
_LEGACY_META = "meta.json"  # the commit file before generations had their own


def _meta_name(gen: int) -> str:
    return f"meta-{gen}.json"


class DriftWindow:
    def __init__(self, size: int, n_features: int, mode: str = "tumbling", step: Optional[int] = None):
        if mode not in ("tumbling", "sliding"):
            raise ValueError(f"window mode must be tumbling or sliding, got {mode!r}")
        self.size = int(size)
        self.n_features = int(n_features)
        self.mode = mode
        self.step = int(step or max(1, self.size // 10)) if mode == "sliding" else self.size
        self._buf = np.zeros((self.size, self.n_features), dtype=np.float64)
        self.fill = 0  # instances in the window now
        self._head = 0  # sliding: next row of the ring to write
        self.since_check = 0  # instances added since the last check
        self.pending_since: Optional[float] = None  # arrival time of the oldest unchecked instance
        self.seen = 0  # instances ever added

    @property
    def min_age_rows(self) -> int:
        return min(self.size, MIN_AGE_CHECK_ROWS)

    @property
    def fill_ratio(self) -> float:
        return self.fill / self.size

    def contents(self) -> np.ndarray:
        """A copy of the instances in the window, oldest first."""
        if self.mode == "sliding" and self.fill == self.size and self._head:
            return np.concatenate((self._buf[self._head:], self._buf[:self._head]))
        return self._buf[:self.fill].copy()

    def add(self, rows: np.ndarray, now: float) -> list[np.ndarray]:
        """Append rows (n, features); return the windows that are now due for a check (copies)."""
        self.seen += rows.shape[0]
        if self.mode == "tumbling":
            return self._add_tumbling(rows, now)
        return self._add_sliding(rows, now)

    def _add_tumbling(self, rows: np.ndarray, now: float) -> list[np.ndarray]:
        out = []
        i, k = 0, rows.shape[0]
        while i < k:
            if self.fill == 0 or self.pending_since is None:
                self.pending_since = now
            take = min(self.size - self.fill, k - i)
            self._buf[self.fill:self.fill + take] = rows[i:i + take]
            self.fill += take
            i += take
            if self.fill == self.size:
                out.append(self._buf.copy())
                self.fill = 0
                self.pending_since = None
        self.since_check = self.fill
        return out

    def _add_sliding(self, rows: np.ndarray, now: float) -> list[np.ndarray]:
        k, size = rows.shape[0], self.size
        if k >= size:
            self._buf[:] = rows[k - size:]
            self._head, self.fill = 0, size
        else:
            end = self._head + k
            if end <= size:
                self._buf[self._head:end] = rows
            else:
                first = size - self._head
                self._buf[self._head:] = rows[:first]
                self._buf[:end - size] = rows[first:]
            self._head = end % size
            self.fill = min(size, self.fill + k)
        if self.pending_since is None:
            self.pending_since = now
        self.since_check += k
        if self.fill == size and self.since_check >= self.step:
            self.since_check = 0
            self.pending_since = None
            return [self.contents()]
        return []

    def age(self, now: float) -> float:
        """Seconds since the oldest unchecked instance arrived (0 when there is none)."""
        return 0.0 if self.pending_since is None else max(0.0, now - self.pending_since)

    def due(self, now: float, max_age: float) -> Optional[np.ndarray]:
        """The window to check because of maxAge, or None (see the module docstring)."""
        if max_age <= 0 or self.pending_since is None or now - self.pending_since < max_age:
            return None
        if self.fill < self.min_age_rows:
            return None
        data = self.contents()
        if self.mode == "tumbling":
            self.fill = 0
        self.since_check = 0
        self.pending_since = None
        return data

    # -- checkpoint state --
    def state(self) -> tuple[np.ndarray, dict[str, Any]]:
        return self.contents(), {"size": self.size, "mode": self.mode, "step": self.step, "fill": self.fill,
                                 "sinceCheck": self.since_check, "pendingSince": self.pending_since,
                                 "seen": self.seen}

    def compatible(self, meta: dict[str, Any]) -> bool:
        return meta.get("size") == self.size and meta.get("mode") == self.mode

    def load_state(self, rows: np.ndarray, meta: dict[str, Any]) -> None:
        n = rows.shape[0]
        if n > self.size or rows.shape[1] != self.n_features:
            raise ValueError(f"checkpoint of shape {list(rows.shape)} does not fit a window of "
                             f"{self.size}x{self.n_features}")
        self._buf[:n] = rows
        self.fill = n
        self._head = n % self.size
        self.since_check = int(meta.get("sinceCheck", n))
        self.pending_since = meta.get("pendingSince")
        self.seen = int(meta.get("seen", n))


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk keeps the previous generation intact
        raise
    os.replace(tmp, path)


class WindowStore:
    """Checkpoint of a `DriftWindow` in `state_dir`: snapshot + append log (see the module docstring)."""

    def __init__(self, state_dir: str, n_features: int):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n_features = int(n_features)
        self.gen = 0
        self._fd: Optional[int] = None
        self._end = 0  # bytes in the open log
        self._record = 8 * self.n_features
        self._held: dict[int, None] = {}  # stream sequences held (JetStream), oldest first, bounded

    def _log(self, gen: int) -> Path:
        return self.dir / f"window-{gen}.log"

    def _npy(self, gen: int) -> Path:
        return self.dir / f"window-{gen}.npy"

    def _read_log(self, gen: int) -> list[tuple[float, np.ndarray]]:
        path = self._log(gen)
        if not path.exists():
            return []
        data = path.read_bytes()
        out, pos = [], 0
        while pos + _HEADER.size <= len(data):
            ts, n = _HEADER.unpack_from(data, pos)
            if n < 0:  # a stream-sequence marker
                self._hold(-n)
                pos += _HEADER.size
                continue
            end = pos + _HEADER.size + n * self._record
            if n <= 0 or end > len(data):
                break
            rows = np.frombuffer(data, dtype=np.float64, count=n * self.n_features, offset=pos + _HEADER.size)
            out.append((ts, rows.reshape(n, self.n_features)))
            pos = end
        if pos < len(data):
            log.warning("drift window log %s: ignoring a torn last record (%d bytes)", path, len(data) - pos)
            os.truncate(path, pos)
        return out

    def restore(self, window: DriftWindow) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Load the checkpoint into `window`; return (saved extra state, windows due for a check)."""
        meta, meta_file = self._newest_meta()
        due: list[np.ndarray] = []
        extra: dict[str, Any] = {}
        self.gen = int(meta["gen"]) if meta else 0
        self._held = dict.fromkeys(int(q) for q in meta.get("sequences", [])) if meta else {}
        if meta and int(meta.get("nFeatures", -1)) != self.n_features:
            log.warning("drift checkpoint in %s has %s features, the detector %d: discarding it",
                        self.dir, meta.get("nFeatures"), self.n_features)
            self.gen += 1
            meta = None
        else:
            if meta:
                extra = meta.get("extra", {})
                try:
                    rows = np.empty((0, self.n_features)) if meta.get("rows") == 0 else \
                        np.load(self._npy(self.gen), allow_pickle=False)
                except (OSError, ValueError) as exc:
                    log.error("drift checkpoint %s unreadable (%s); its window is lost", self._npy(self.gen), exc)
                    rows = np.empty((0, self.n_features))
                wmeta = meta.get("window", {})
                if window.compatible(wmeta):
                    window.load_state(rows, wmeta)
                else:
                    log.warning("drift window changed (%s/%s -> %s/%s): replaying the %d saved instances",
                                wmeta.get("mode"), wmeta.get("size"), window.mode, window.size, rows.shape[0])
                    if rows.shape[0]:
                        due += window.add(rows, wmeta.get("pendingSince") or time.time())
            records = self._read_log(self.gen)
            for ts, rows in records:
                due += window.add(rows, ts)
            if records:
                log.info("drift window: replayed %d instances from the log", sum(r.shape[0] for _, r in records))
        keep = {meta_file, self._log(self.gen).name, self._npy(self.gen).name}
        for path in self.dir.iterdir():  # leftovers of other generations or interrupted writes
            if path.name not in keep and (path.name.startswith(("window-", "meta-")) or path.name.endswith(".tmp")
                                          or path.name == _LEGACY_META):
                path.unlink(missing_ok=True)
        self._fd = os.open(self._log(self.gen), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._end = os.fstat(self._fd).st_size
        return extra, due

    def _newest_meta(self) -> tuple[Optional[dict], Optional[str]]:
        """The newest readable meta file's content and name (None, None when there is none)."""
        found = []
        for path in self.dir.glob("meta*.json"):
            name = path.name
            if name == _LEGACY_META:
                found.append((-1, name))
            elif name.startswith("meta-") and name[5:-5].isdigit():
                found.append((int(name[5:-5]), name))
        for _, name in sorted(found, reverse=True):  # a legacy file only when no generation file is there
            try:
                meta = json.loads((self.dir / name).read_text())
                int(meta["gen"])
                return meta, name
            except (OSError, ValueError, KeyError, TypeError):
                log.error("drift checkpoint %s is unreadable; trying an older one", self.dir / name)
        return None, None

    def append(self, rows: np.ndarray, now: float, sequence: Optional[int] = None) -> None:
        """Log a batch (call before acknowledging it). rows: C-contiguous float64 (n, features);
        `sequence`: its JetStream stream sequence, logged in the same write.
        Raises OSError (disk full, read-only) with the log cut back to its last whole record."""
        record = _HEADER.pack(now, rows.shape[0]) + rows.tobytes()
        if sequence:
            record += _HEADER.pack(now, -int(sequence))
        view = memoryview(record)
        if self._fd is None:
            raise OSError("the window log is not open (restore() first, not after close())")
        start = self._end  # the one writer of its log: the end is known without an lseek per event
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            os.ftruncate(self._fd, start)  # no torn record: later appends stay readable
            raise
        self._end = start + len(record)
        if sequence:
            self._hold(int(sequence))

    def _hold(self, sequence: int) -> None:
        self._held[sequence] = None
        if len(self._held) > HELD_SEQUENCES:
            del self._held[next(iter(self._held))]

    def holds(self, sequence: int) -> bool:
        """Whether the checkpoint has the event of this stream sequence (JetStream)."""
        return sequence in self._held

    def snapshot(self, window: DriftWindow, extra: dict[str, Any]) -> None:
        """Write the whole window and `extra` as generation gen+1, start its log, drop the old files."""
        gen = self.gen + 1
        rows, wmeta = window.state()
        if rows.shape[0]:
            _write_atomic(self._npy(gen), lambda f: np.save(f, rows, allow_pickle=False))
        meta = {"version": 1, "gen": gen, "nFeatures": self.n_features, "rows": int(rows.shape[0]), "window": wmeta,
                "extra": extra, "sequences": list(self._held), "savedAt": time.time()}
        fd = os.open(self._log(gen), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:  # the commit point last: until it lands, the old generation (and its log) stays current
            _write_atomic(self.dir / _meta_name(gen), lambda f: f.write(json.dumps(meta).encode()))
        except OSError:
            os.close(fd)
            raise
        old, self._fd, self.gen = self._fd, fd, gen
        self._end = 0
        if old is not None:
            os.close(old)
        for path in (self._log(gen - 1), self._npy(gen - 1), self.dir / _meta_name(gen - 1), self.dir / _LEGACY_META):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
