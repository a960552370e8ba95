"""Delivery de-duplication: drop an event this detector already processed (DESIGN §11).

The logger retries a delivery when it is not sure it arrived, and brokers redeliver; a
retried CloudEvent keeps its ``id``, ``source`` and ``type``, so counting it twice would
bias drift windows, outlier rates and accuracy. `RecentIds` remembers the identities of
the last `capacity` (default 100,000) events processed, in insertion order, and forgets
the oldest beyond that — a bounded set. An id is only remembered once the event was
processed (a 4xx/5xx answer lets the sender retry it); a retry that arrives while the first
delivery is still being processed (a slow event — a batch of images — outlasting the sender's
timeout) is answered 429 by the frame, so the sender retries it after backoff and it is then
dropped as a duplicate instead of being processed twice. Identities are 64-bit hashes of
(type, source, id): a KServe logger reuses one ``ce-id`` for the request and response
events of an inference, which differ in type.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

DEFAULT_CAPACITY = 100_000


class RecentIds:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = int(capacity)
        self._seen: OrderedDict[int, None] = OrderedDict()

    @staticmethod
    def key(attributes: Mapping) -> int:
        return hash((attributes.get("type"), attributes.get("source"), attributes.get("id")))

    def __contains__(self, key: int) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: int) -> None:
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
