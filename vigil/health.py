"""Recent health of a service: how much of what it received lately it rejected or skipped.

A service that answers 4xx to nearly every event is running but useless; `/status` says so.
`RecentHealth` keeps per-second buckets of accepted / rejected / skipped events for the last
`WINDOW_SECONDS` and the outcomes of the last `LAST_EVENTS` events; `snapshot()` judges
whichever of the two holds more events (so a burst is judged on its last 100 events and a
quiet minute on the whole minute). Once at least `MIN_EVENTS` are in it and more than
half were rejected or skipped, the service is *degraded*, and the message names the most
recent reason: ``drift rejected 111 of 111 events: expected 9 features, got 10``.
`vigil.status.summarize` turns that into the monitor's `Degraded` phase.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Optional

WINDOW_SECONDS = 60
LAST_EVENTS = 100
#: Fewer recent events than this never make a service degraded (one bad client request is not an outage).
MIN_EVENTS = 10

_ACCEPTED, _REJECTED, _SKIPPED = 0, 1, 2


class RecentHealth:
    def __init__(self, component: str, clock: Callable[[], float] = time.monotonic):
        self.component = component
        self.clock = clock
        self._buckets: deque[list] = deque()  # [second, accepted, rejected, skipped]
        self._last: deque[int] = deque(maxlen=LAST_EVENTS)
        self.last_reason: Optional[str] = None
        self.last_message: Optional[str] = None
        self._last_verb = "rejected"

    def _add(self, outcome: int) -> None:
        sec = int(self.clock())
        if not self._buckets or self._buckets[-1][0] != sec:
            self._buckets.append([sec, 0, 0, 0])
            self._expire(sec)
        self._buckets[-1][1 + outcome] += 1
        self._last.append(outcome)

    def _expire(self, sec: int) -> None:
        while self._buckets and self._buckets[0][0] <= sec - WINDOW_SECONDS:
            self._buckets.popleft()

    def accepted(self) -> None:
        self._add(_ACCEPTED)

    def rejected(self, reason: str, message: str) -> None:
        self._add(_REJECTED)
        self.last_reason, self.last_message, self._last_verb = reason, message, "rejected"

    def skipped(self, reason: str, message: str) -> None:
        """An accepted event whose instances were all skipped (e.g. missing values, DESIGN §8)."""
        self._add(_SKIPPED)
        self.last_reason, self.last_message, self._last_verb = reason, message, "skipped"

    def snapshot(self) -> dict[str, Any]:
        """``{"events", "rejected", "skipped", "lastReason", "lastError", "degraded", "message"}``."""
        self._expire(int(self.clock()))
        minute = [sum(b[i] for b in self._buckets) for i in (1, 2, 3)]
        last = [sum(1 for o in self._last if o == k) for k in (_ACCEPTED, _REJECTED, _SKIPPED)]
        accepted, rejected, skipped = minute if sum(minute) >= sum(last) else last
        events = accepted + rejected + skipped
        degraded = events >= MIN_EVENTS and (rejected + skipped) * 2 > events
        out: dict[str, Any] = {"events": events, "rejected": rejected, "skipped": skipped,
                               "lastReason": self.last_reason, "lastError": self.last_message,
                               "degraded": degraded}
        if degraded:
            verb, n = ("rejected", rejected) if rejected >= skipped else ("skipped", skipped)
            out["message"] = f"{self.component} {verb} {n} of {events} events: {self.last_message}"
        return out
