"""Micro-batching: many concurrent callers, one model call for all their rows.

A `MicroBatcher` wraps a blocking function ``fn(rows) -> outputs`` (rows stacked on the
first axis; outputs an array or a list whose first axis is the row axis, or a tuple of
those and None). Each caller awaits `submit(rows)` and gets back only the slice of the
outputs that belongs to its own rows. ``fn`` may return Python lists (``tolist`` once per
batch): slicing a list per caller is cheaper than converting a slice per caller.

One worker task owns the model: it takes the queued requests until the batch holds
`max_batch_size` rows or `max_delay` seconds have passed since the first one came,
stacks them, runs ``fn`` ONCE in a worker thread (so the event loop keeps accepting
requests meanwhile), and resolves every caller's future. A request is never split; one
larger than `max_batch_size` runs alone.

Waiting for company only pays while company is coming, so the worker waits only until
the batch holds as many requests as the previous one did (then it takes whatever else is
already queued and goes): a lone caller (concurrency 1) is never delayed, steady
concurrency k gives batches of k without waiting out the delay, and when more callers
appear, queued requests join at once and the next batch waits for that many.
`max_batch_size=1` turns batching off: one ``fn`` call per request.

Per request the event loop does little: `submit` appends to a deque and awaits one
future; the worker is woken once per batch (when the batch is complete or its delay is
up), not once per request. The queue is bounded (``queue_size`` requests): beyond it,
callers wait in `submit` for room (back-pressure).

Nothing here knows about TensorFlow: it is tested with a plain numpy function.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np

log = logging.getLogger("vigil.outlier.batcher")

#: ``on_batch(rows, requests, seconds)`` is called after every model call.
BatchHook = Callable[[int, int, float], None]


class _Pending:
    __slots__ = ("rows", "future")

    def __init__(self, rows: np.ndarray, future: asyncio.Future):
        self.rows = rows
        self.future = future


def _slice(outputs: Any, start: int, stop: int) -> Any:
    """Rows start:stop of an output (an array or a list), of each output of a tuple; None stays None."""
    if type(outputs) is tuple:
        return tuple(None if o is None else o[start:stop] for o in outputs)
    if outputs is None:
        return None
    return outputs[start:stop]


class MicroBatcher:
    def __init__(self, fn: Callable[[np.ndarray], Any], max_batch_size: int = 64, max_delay: float = 0.005,
                 on_batch: Optional[BatchHook] = None, queue_size: int = 0):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_delay < 0:
            raise ValueError("max_delay must not be negative")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self.on_batch = on_batch
        #: bounded so a flood of requests waits in `submit` (back-pressure) instead of piling up
        self.queue_size = queue_size or 16 * max_batch_size
        self._pending: collections.deque[_Pending] = collections.deque()
        self._pending_rows = 0
        #: what the worker waits for: (future, requests wanted); `submit` resolves it once that many are queued
        self._wake: Optional[asyncio.Future] = None
        self._want = 1
        self._room: Optional[asyncio.Future] = None  # callers waiting for room in the queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-predict")
        self._worker: Optional[asyncio.Task] = None
        self._last_batch_requests = 1
        self.batches = 0

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="vigil-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        leftovers, self._pending = self._pending, collections.deque()
        self._pending_rows = 0
        for item in leftovers:
            if not item.future.done():
                item.future.set_exception(RuntimeError("batcher stopped"))
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- callers ---------------------------------------------------------------
    async def submit(self, rows: np.ndarray) -> Any:
        """``fn``'s outputs for exactly these rows (computed together with other callers' rows)."""
        if self._worker is None:
            raise RuntimeError("batcher is not started")
        if not isinstance(rows, np.ndarray):
            rows = np.asarray(rows)
        if rows.ndim < 1 or rows.shape[0] == 0:
            raise ValueError("submit needs at least one row")
        loop = asyncio.get_running_loop()
        while len(self._pending) >= self.queue_size:  # back-pressure: wait for the worker to take a batch
            if self._room is None or self._room.done():
                self._room = loop.create_future()
            await asyncio.shield(self._room)
            if self._worker is None:
                raise RuntimeError("batcher stopped")
        future = loop.create_future()
        self._pending.append(_Pending(rows, future))
        self._pending_rows += len(rows)
        wake = self._wake
        if wake is not None and not wake.done() and (len(self._pending) >= self._want
                                                     or self._pending_rows >= self.max_batch_size):
            wake.set_result(None)
        return await future

    # -- the worker -----------------------------------------------------------------
    async def _wait(self, want: int, timeout: Optional[float]) -> None:
        """Until `want` requests are queued (or as many rows as a batch holds), or `timeout` seconds."""
        loop = asyncio.get_running_loop()
        self._want = want
        self._wake = wake = loop.create_future()
        timer = loop.call_later(timeout, _resolve, wake) if timeout is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> list[_Pending]:
        pending = self._pending
        if not pending:
            await self._wait(1, None)
        expected = self._last_batch_requests  # how many callers shared the previous call
        if (expected > 1 and len(pending) < expected and self._pending_rows < self.max_batch_size
                and self.max_delay > 0):
            # Wait for more only while fewer callers are here than the last batch had:
            # once they are all here, whoever else is coming would come late anyway.
            await self._wait(expected, self.max_delay)
        first = pending.popleft()
        batch, rows = [first], len(first.rows)
        while pending and rows + len(pending[0].rows) <= self.max_batch_size:  # never split a request
            item = pending.popleft()
            batch.append(item)
            rows += len(item.rows)
        self._pending_rows -= rows
        room = self._room
        if room is not None and not room.done() and len(pending) < self.queue_size:
            room.set_result(None)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.done()]  # callers that gave up are skipped
            self._last_batch_requests = len(batch)
            if not live:
                continue
            stacked = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self.fn, stacked)
            except asyncio.CancelledError:
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(RuntimeError("batcher stopped"))
                raise
            except Exception as exc:  # the model failed: every caller of this batch hears why
                log.exception("batched call failed for %d rows", len(stacked))
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            self.batches += 1
            if len(live) == 1:
                if not live[0].future.done():
                    live[0].future.set_result(outputs)
            else:
                start = 0
                for p in live:
                    stop = start + len(p.rows)
                    if not p.future.done():
                        p.future.set_result(_slice(outputs, start, stop))
                    start = stop
            if self.on_batch is not None:
                try:
                    self.on_batch(len(stacked), len(live), elapsed)
                except Exception:  # a metrics hook must never stop the worker
                    log.exception("on_batch hook failed")


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
