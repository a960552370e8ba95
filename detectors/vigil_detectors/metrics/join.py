"""A bounded, expiring store that joins response events and feedback events by inference id.

Either side may arrive first: a response waits for its feedback, feedback waits for its
response. An entry that waits longer than the TTL expires; when a side holds
`max_pending` entries, the oldest is evicted to make room. Both are unmatched losses,
reported to `on_expire(kind, reason)` (kind ``response``/``feedback``, reason
``ttl``/``capacity``) so the service can count them.

Entries are kept in insertion order (an `OrderedDict` per side), which is also age order,
so expiry only ever looks at the head: O(1) per expired entry, no scan. The store is used
from one asyncio event loop, so it takes no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Optional

KINDS = ("response", "feedback")


class JoinStore:
    def __init__(self, ttl_seconds: float, max_pending: int,
                 on_expire: Callable[[str, str], None] = lambda kind, reason: None,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = float(ttl_seconds)
        self.max_pending = int(max_pending)
        self.on_expire = on_expire
        self.clock = clock
        self._pending: dict[str, OrderedDict[str, tuple[float, Any]]] = {k: OrderedDict() for k in KINDS}

    def __len__(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def pending(self, kind: str) -> int:
        return len(self._pending[kind])

    def put(self, kind: str, key: str, value: Any) -> Optional[Any]:
        """Offer one side of a pair. Returns the other side's value if it was waiting (and
        removes it), else stores this side and returns None. A second entry of the same kind
        and key replaces the first (and restarts its clock)."""
        other = "feedback" if kind == "response" else "response"
        now = self.clock()
        self.expire(now)
        waiting = self._pending[other].pop(key, None)
        if waiting is not None:
            return waiting[1]
        side = self._pending[kind]
        side.pop(key, None)
        side[key] = (now, value)
        while len(side) > self.max_pending:
            side.popitem(last=False)
            self.on_expire(kind, "capacity")
        return None

    def discard(self, kind: str, key: str) -> bool:
        """Drop a waiting entry that no longer needs a partner (not counted as expired)."""
        return self._pending[kind].pop(key, None) is not None

    def expire(self, now: Optional[float] = None) -> int:
        """Remove every entry older than the TTL; returns how many expired."""
        cutoff = (self.clock() if now is None else now) - self.ttl
        n = 0
        for kind, side in self._pending.items():
            while side:
                key, (born, _) = next(iter(side.items()))
                if born > cutoff:
                    break
                del side[key]
                self.on_expire(kind, "ttl")
                n += 1
        return n
