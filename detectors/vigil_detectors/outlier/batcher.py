"""Micro-batching: many concurrent callers, one model call for all their rows.

A `MicroBatcher` wraps a blocking function ``fn(rows) -> outputs`` (rows stacked on the
first axis; outputs an array or a tuple/list of arrays whose first axis is the row axis).
Each caller awaits `submit(rows)` and gets back only the slice of the outputs that
belongs to its own rows.

One worker task owns the model: it takes the first queued request, then keeps taking
requests until the batch holds `max_batch_size` rows or `max_delay` seconds have passed
since it took the first one, stacks them, runs ``fn`` ONCE in a worker thread (so the
event loop keeps accepting requests meanwhile), and resolves every caller's future.
A request is never split; one larger than `max_batch_size` runs alone.

Waiting for company only pays while company is coming, so the worker waits only until
the batch holds as many requests as the previous one did (then it takes whatever else is
already queued and goes): a lone caller (concurrency 1) is never delayed, steady
concurrency k gives batches of k without waiting out the delay, and when more callers
appear, queued requests join at once and the next batch waits for that many.
`max_batch_size=1` turns batching off: one ``fn`` call per request.

Nothing here knows about TensorFlow: it is tested with a plain numpy function.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

log = logging.getLogger("vigil.outlier.batcher")

#: ``on_batch(rows, requests, seconds)`` is called after every model call.
BatchHook = Callable[[int, int, float], None]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future


def _slice(outputs: Any, start: int, stop: int) -> Any:
    if isinstance(outputs, tuple):
        return tuple(_slice(o, start, stop) for o in outputs)
    if isinstance(outputs, list):
        return [_slice(o, start, stop) for o in outputs]
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
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size or 16 * max_batch_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-predict")
        self._worker: Optional[asyncio.Task] = None
        self._carry: Optional[_Pending] = None
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
        leftovers = [self._carry] if self._carry else []
        self._carry = None
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for item in leftovers:
            if not item.future.done():
                item.future.set_exception(RuntimeError("batcher stopped"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- callers ---------------------------------------------------------------
    async def submit(self, rows: np.ndarray) -> Any:
        """``fn``'s outputs for exactly these rows (computed together with other callers' rows)."""
        if self._worker is None:
            raise RuntimeError("batcher is not started")
        rows = np.asarray(rows)
        if rows.ndim < 1 or rows.shape[0] == 0:
            raise ValueError("submit needs at least one row")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(rows, future))
        return await future

    # -- the worker -----------------------------------------------------------------
    async def _next(self, timeout: Optional[float]) -> Optional[_Pending]:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        if timeout is not None and timeout <= 0:
            return None
        if sys.version_info < (3, 11):  # no asyncio.timeout before 3.11
            try:
                return await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:
                return None
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None  # no timeout: _next waits for an item
        batch, rows = [first], len(first.rows)
        expected = self._last_batch_requests  # how many callers shared the previous call
        deadline = loop.time() + (self.max_delay if expected > 1 else 0.0)
        while rows < self.max_batch_size:
            # Wait for more only while the batch has fewer callers than the last one had:
            # once they are all here, whoever else is coming would come late anyway.
            item = await self._next(deadline - loop.time() if len(batch) < expected else 0.0)
            if item is None:
                break
            if rows + len(item.rows) > self.max_batch_size:
                self._carry = item  # starts the next batch; never split a request
                break
            batch.append(item)
            rows += len(item.rows)
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
