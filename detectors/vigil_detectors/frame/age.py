"""The maxAge timer of a windowed detector (drift, quality): a quiet stream still gets its window checked.

`AgeTimer` runs one background task from the detector's `start` to its `stop`. Every tick
(a tenth of maxAge, kept between 0.05 s and 1 s) it takes the detector's lock and awaits
``check(now)``, the detector's own "is the window due on age, and if so check it"; a check
that fails is logged and the timer goes on. With maxAge 0 (off) no task is started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Optional


class AgeTimer:
    def __init__(self, max_age: float, lock: asyncio.Lock, check: Callable[[float], Awaitable[object]],
                 log: logging.Logger, what: str):
        self.max_age = max_age
        self.tick = min(1.0, max(0.05, max_age / 10))
        self._lock = lock
        self._check = check
        self._log = log
        self._what = what
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        if self.max_age > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                async with self._lock:
                    await self._check(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s maxAge check failed", self._what)
