"""The logger's capture writer: a bounded queue and one writer thread that rotate files through fsspec.

The inference path only calls `CaptureWriter.offer` (an append under a lock: it never
waits, never touches the disk or the network, never wakes the writer, which drains the queue
on a timer, every ``flush_seconds``, in batches). A record over the edge's body limit
(``too_large``) or one that does not fit the queue (``queue_full`` by count,
``queue_bytes`` by bytes) is dropped and counted at once. The writer thread takes what is
queued, appends it to the current file and makes it readable:

- ``jsonl``: each batch is written and flushed, so a local file holds a record within
  ``flush_seconds`` of the event (remote filesystems such as s3 show a file when it is
  closed, i.e. at rotation);
- ``parquet`` (pyarrow, imported only then): row groups of up to `ROW_GROUP` records,
  readable when the file is closed at rotation.

A file is closed ``rotate_seconds`` after it was opened, even when no event comes (the
writer wakes up for it), so every record is readable within ``rotate`` + 10 s. Files are
named by `vigil.capture.record.file_name`; an existing name is never overwritten (the
sequence number moves on). A location that cannot be written (missing library,
permissions, a full disk, no bucket) never reaches the inference path: the failing
batch is dropped (``write_error``), the failure counted in ``vigil_capture_errors_total``
and logged at most every 10 s, and the writer tries again after a backoff (1 s doubling
to 30 s) while the queue bounds what waits. On shutdown the queue gets a grace period;
what is left is counted as ``shutdown``. No record is dropped uncounted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Optional

from vigil.capture.record import file_name, json_line, row_from_event
from vigil.capture.settings import CaptureSettings
from vigil.telemetry import ServiceMetrics

log = logging.getLogger("vigil.logger.capture")

#: Why a record was not written (the `reason` label of vigil_capture_records_dropped_total).
DROP_REASONS = ("queue_full", "queue_bytes", "too_large", "write_error", "shutdown")
#: What failed (the `reason` label of vigil_capture_errors_total).
ERROR_REASONS = ("open", "write", "close", "unavailable")
ROW_GROUP = 5000
ROW_GROUP_BYTES = 16 * 1024 * 1024
BACKOFF_INITIAL, BACKOFF_MAX = 1.0, 30.0
_BATCH = 2000


class CaptureMetrics:
    def __init__(self, service: ServiceMetrics):
        self.records = service.counter("vigil_capture_records_total", "Capture records written")
        self.errors = service.counter("vigil_capture_errors_total",
                                      "Capture writes that failed (the location could not be opened, written or closed)",
                                      ("reason",))
        self.dropped = service.counter("vigil_capture_records_dropped_total", "Capture records not written, by reason",
                                       ("reason",))
        self.files = service.counter("vigil_capture_files_total", "Capture files completed (closed)")
        self.queue_depth = service.gauge("vigil_capture_queue_depth", "Capture records waiting for the writer")
        for reason in DROP_REASONS:  # series that exist from the start read 0, not "no data"
            self.dropped.labels(reason=reason)
        for reason in ERROR_REASONS:
            self.errors.labels(reason=reason)


class CaptureUnavailable(RuntimeError):
    """The chosen location or format needs a library that is not installed."""


def filesystem(uri: str):
    """(fsspec filesystem, root path) of a capture location: a local path, ``file://`` or an fsspec URL."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as e:  # s3fs / gcsfs not installed
        raise CaptureUnavailable(f"capture to {uri} needs its fsspec backend: {e} "
                                 "(pip install 'vigil-ml[storage]')") from None


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise CaptureUnavailable("capture format parquet needs pyarrow, which is not installed: "
                                 "pip install pyarrow (it comes with 'vigil-ml[detectors]'), or use format: jsonl"
                                 ) from None
    return pyarrow


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


class _Segment:
    """One open capture file."""

    def __init__(self, fs, path: str, fmt: str, opened: float):
        self.path, self.fmt, self.opened = path, fmt, opened
        self.file = fs.open(path, "wb")
        self.rows: list[dict[str, Any]] = []  # parquet: rows not yet in a row group
        self.pending_bytes = 0
        self.writer: Any = None

    def write(self, rows: list[dict[str, Any]]) -> int:
        """Write rows; returns how many are now in the file (parquet keeps some buffered)."""
        if self.fmt == "jsonl":
            self.file.write(b"".join(json_line(r) for r in rows))
            self.file.flush()
            return len(rows)
        self.rows += rows
        self.pending_bytes += sum(len(r["data"]) for r in rows)
        if len(self.rows) >= ROW_GROUP or self.pending_bytes >= ROW_GROUP_BYTES:
            return self._row_group()
        return 0

    def _row_group(self) -> int:
        if not self.rows:
            return 0
        pa = _pyarrow()
        rows, self.rows, self.pending_bytes = self.rows, [], 0
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        columns["time"] = [int(t * 1_000_000) for t in columns["time"]]
        table = pa.table({k: pa.array(v, type=_parquet_type(pa, k)) for k, v in columns.items()})
        if self.writer is None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.file, table.schema, compression="zstd")
        self.writer.write_table(table)
        return len(rows)

    def close(self) -> int:
        """Close the file; returns the records that were still buffered and are now written."""
        try:
            n = self._row_group() if self.fmt == "parquet" else 0
            if self.writer is not None:
                self.writer.close()
        finally:
            self.file.close()
        return n

    def abandon(self) -> int:
        """After a failure: close what can be closed; returns the buffered records lost."""
        lost = len(self.rows)
        self.rows = []
        for closer in (getattr(self.writer, "close", None), self.file.close):
            try:
                if closer:
                    closer()
            except Exception:  # noqa: BLE001 - the file is given up anyway
                pass
        return lost


def _parquet_type(pa, column: str):
    if column == "time":
        return pa.timestamp("us", tz="UTC")
    return pa.binary() if column == "data" else pa.string()


class CaptureWriter:
    """Bounded, counted capture of the logger's events (see the module docstring)."""

    def __init__(self, settings: CaptureSettings, metrics: CaptureMetrics, max_record_bytes: int = 32 * 1024 * 1024,
                 clock: Callable[[], float] = time.time, subdir: str = ""):
        self.settings = settings
        self.subdir = subdir.strip("/")  # one per logger replica (its pod name)
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.clock = clock
        self.queue: deque[tuple[str, dict[str, Any], bytes]] = deque()  # bounded in `offer`
        self.bytes = 0
        self._lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self._grace = 2.0
        self.written = 0
        self.dropped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.files: list[str] = []  # completed files (most recent last, bounded)
        self.last_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._segment: Optional[_Segment] = None
        self._seq = 0
        self._retry_at = 0.0
        self._backoff = BACKOFF_INITIAL
        self._last_warning = 0.0
        self._fs: Any = None
        self._root = ""
        self._m_records = metrics.records.labels()
        self._m_files = metrics.files.labels()

    # -- the inference path ------------------------------------------------------------------------

    def sample(self) -> bool:
        """One draw per inference: capture it?"""
        rate = self.settings.sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def offer(self, kind: str, attributes: dict[str, Any], data: bytes) -> bool:
        """Queue one event without waiting; drops (and counts) it when it does not fit."""
        size = len(data)
        if size > self.max_record_bytes:
            self._drop("too_large")
            return False
        with self._lock:
            if len(self.queue) >= self.settings.queue_size:
                reason = "queue_full"
            elif self.bytes + size > self.settings.queue_bytes:
                reason = "queue_bytes"
            else:
                self.queue.append((kind, attributes, data))
                self.bytes += size
                return True
        self._drop(reason)
        return False

    @property
    def depth(self) -> int:
        return len(self.queue)

    # -- the writer thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        log.info("capture: %s every %gs to %s (sample rate %g)", self.settings.format, self.settings.rotate_seconds,
                 self.settings.uri, self.settings.sample_rate)

    def stop(self, grace: float) -> None:
        """Write what is queued for up to `grace` seconds, close the file, count what is left (blocking)."""
        self._grace = grace
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace + 5.0)
        with self._lock:
            left = len(self.queue)
            self.queue.clear()
            self.bytes = 0
        if left:
            self._drop("shutdown", left)
            log.warning("capture: %d queued records dropped at shutdown", left)

    def _run(self) -> None:
        deadline_stop: Optional[float] = None
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                deadline_stop = deadline_stop or now + self._grace
                if not self.queue or now > deadline_stop:
                    break
            wait = self.settings.flush_seconds
            if self._segment is not None:
                wait = min(wait, max(0.0, self._segment.opened + self.settings.rotate_seconds - self.clock()))
            if self._retry_at > now:  # backing off after a failure: the queue bounds what waits
                time.sleep(min(wait or 0.05, self._retry_at - now, 0.5))
                self._rotate_if_due()
                continue
            if not self._stop.is_set():  # wake up on a timer, not per record: the inference path never waits on us
                self._stop.wait(wait)
            self._rotate_if_due()
            while self._retry_at <= time.monotonic():  # not backing off
                batch = self._take()
                if not batch:
                    break
                self._write(batch)
        self._close_segment()

    def _take(self) -> list[tuple[str, dict[str, Any], bytes]]:
        with self._lock:
            batch = [self.queue.popleft() for _ in range(min(_BATCH, len(self.queue)))]
            self.bytes -= sum(len(d) for _, _, d in batch)
        return batch

    def _rotate_if_due(self) -> None:
        seg = self._segment
        if seg is not None and self.clock() >= seg.opened + self.settings.rotate_seconds:
            self._close_segment()

    def _write(self, batch: list[tuple[str, dict[str, Any], bytes]]) -> None:
        rows = [row_from_event(kind, attrs, data) for kind, attrs, data in batch]
        try:
            if self._segment is None:
                self._segment = self._open()
        except Exception as e:  # noqa: BLE001 - any failure to open is counted, never raised
            reason = "unavailable" if isinstance(e, CaptureUnavailable) else "open"
            self._fail(reason, e, len(rows))
            return
        try:
            written = self._segment.write(rows)
        except Exception as e:  # noqa: BLE001
            seg, self._segment = self._segment, None
            lost = seg.abandon()  # parquet: the rows buffered, this batch's included
            self._fail("write", e, lost if seg.fmt == "parquet" else lost + len(rows))
            return
        self._ok(written)

    def _open(self) -> _Segment:
        if self.settings.format == "parquet":
            _pyarrow()
        if self._fs is None:
            self._fs, root = filesystem(self.settings.uri)
            self._root = f"{root.rstrip('/')}/{self.subdir}" if self.subdir else root
        if _is_local(self._fs):
            self._fs.makedirs(self._root, exist_ok=True)
        opened = self.clock()
        while True:
            path = f"{self._root.rstrip('/')}/{file_name(opened, self._seq, self.settings.format)}"
            self._seq += 1
            if not self._fs.exists(path):
                return _Segment(self._fs, path, self.settings.format, opened)

    def _close_segment(self) -> None:
        seg, self._segment = self._segment, None
        if seg is None:
            return
        try:
            written = seg.close()
        except Exception as e:  # noqa: BLE001
            self._fail("close", e, seg.abandon())
            return
        self._ok(written)
        self._m_files.inc()
        self.files = [*self.files[-99:], seg.path]

    def _ok(self, written: int) -> None:
        if written:
            self.written += written
            self._m_records.inc(written)
        self._backoff = BACKOFF_INITIAL
        self._retry_at = 0.0

    def _fail(self, reason: str, error: BaseException, lost: int) -> None:
        self.errors[reason] += 1
        self.metrics.errors.labels(reason=reason).inc()
        if lost:
            self._drop("write_error", lost)
        self.last_error = f"{type(error).__name__}: {error}"
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # an unwritable location must not flood the log
            self._last_warning = now
            log.warning("capture to %s failed (%s), %d records dropped; retrying in %.0fs: %s", self.settings.uri,
                        reason, lost, self._retry_at - now, self.last_error)

    def _drop(self, reason: str, n: int = 1) -> None:
        with self._drop_lock:
            self.dropped[reason] += n
        self.metrics.dropped.labels(reason=reason).inc(n)

    def summary(self) -> dict[str, Any]:
        return {"uri": self.settings.uri, "format": self.settings.format, "sampleRate": self.settings.sample_rate,
                "records": self.written, "queueDepth": self.depth, "dropped": dict(self.dropped),
                "errors": dict(self.errors), "lastError": self.last_error,
                "file": self._segment.path if self._segment else None}
