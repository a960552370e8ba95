"""Event delivery from the logger to its sinks, off the inference path.

Each sink has a queue bounded by count (``queue_size``) and by bytes (``queue_bytes``:
the bodies of the events waiting or being delivered) and a few worker tasks. The
inference path only calls `Sink.offer` (``put_nowait``): an event over the sink's body
limit (``too_large``: the edge limit every detector holds, so it would be refused there)
or one that does not fit the queue (``queue_full``, ``queue_bytes``) is dropped at once
and counted; it never waits. Workers turn an `Event` into a binary-mode
CloudEvent (``cloudevents`` SDK, built once and shared by all sinks) and POST it,
retrying connection errors, timeouts, 408/425/429 and 5xx with exponential backoff and
jitter. Other 4xx answers are not retried (``rejected``); after the last retry the event
is dropped as ``retries_exhausted``. On shutdown the queues get a short grace period to
drain; whatever is left is counted as ``shutdown``. No drop goes uncounted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

import aiohttp
from cloudevents.core.bindings.http import HTTPMessage, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from vigil.logger.metrics import LoggerMetrics
from vigil.logger.settings import SinkConfig

log = logging.getLogger(__name__)
_FORMAT = JSONFormat()
RETRYABLE_STATUS = frozenset({408, 425, 429})


class Event:
    """One event to deliver: attributes and the raw body, encoded on first use by a worker."""

    __slots__ = ("kind", "attributes", "data", "_message")

    def __init__(self, kind: str, attributes: dict[str, Any], data: bytes):
        self.kind = kind
        self.attributes = attributes  # `time` is a float timestamp until encoded
        self.data = data
        self._message: Optional[HTTPMessage] = None

    def message(self) -> HTTPMessage:
        if self._message is None:
            attrs = {k: v for k, v in self.attributes.items() if v is not None and v != ""}
            attrs["time"] = datetime.fromtimestamp(attrs["time"], timezone.utc)
            self._message = to_binary(CloudEvent(attrs, self.data), _FORMAT)
        return self._message


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    initial: float = 0.05
    maximum: float = 2.0

    def delay(self, attempt: int) -> float:
        """Backoff before retry `attempt` (0-based): exponential, capped, with equal jitter."""
        base = min(self.maximum, self.initial * (2 ** attempt))
        return base / 2 + random.uniform(0, base / 2)


class QueuedSink:
    """The bounded queue, workers and drop accounting every transport shares; `_deliver` is the transport's."""

    def __init__(self, name: str, url: str, types: Sequence[str], policy: RetryPolicy, metrics: LoggerMetrics,
                 queue_size: int, workers: int = 4, queue_bytes: int = 64 * 1024 * 1024,
                 max_event_bytes: int = 32 * 1024 * 1024):
        self.name = name
        self.url = url
        self.types = frozenset(types)
        self.policy = policy
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self.workers = workers
        self.queue_bytes = queue_bytes
        self.max_event_bytes = max_event_bytes
        self.bytes = 0  # bodies queued or being delivered
        self.sent = 0
        self.dropped: Counter[str] = Counter()
        self._tasks: list[asyncio.Task] = []
        self._m_sent = metrics.sent.labels(sink=self.name)
        self._m_retries = metrics.retries.labels(sink=self.name)
        self._m_dropped = metrics.dropped
        self._last_warning = 0.0

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def offer(self, event: Event) -> bool:
        """Enqueue without waiting; an event too large, or a full queue, drops (and counts) the event."""
        size = len(event.data)
        if size > self.max_event_bytes:
            self._drop("too_large")
            return False
        if self.bytes + size > self.queue_bytes:
            self._drop("queue_bytes")
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop("queue_full")
            return False
        self.bytes += size
        return True

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n
        self._m_dropped.labels(sink=self.name, reason=reason).inc(n)

    def _warn(self, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # a down sink must not flood the log
            self._last_warning = now
            log.warning("sink %s: " + msg, self.name, *args)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"sink-{self.name}-{i}") for i in range(self.workers)]

    async def _work(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                self._drop("shutdown")
                raise
            except Exception:  # noqa: BLE001 - a worker must survive anything one event does
                log.exception("sink %s: unexpected error delivering an event", self.name)
                self._drop("encode_error")
            finally:
                self.bytes -= len(event.data)
                self.queue.task_done()

    async def _deliver(self, event: Event) -> None:
        raise NotImplementedError

    async def stop(self, grace: float) -> None:
        """Let the queue drain for up to `grace` seconds, then stop; count what is left."""
        if self._tasks and grace > 0:
            try:
                await asyncio.wait_for(self.queue.join(), grace)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        left = 0
        while not self.queue.empty():
            self.bytes -= len(self.queue.get_nowait().data)
            self.queue.task_done()
            left += 1
        if left:
            self._drop("shutdown", left)
            log.warning("sink %s: %d queued events dropped at shutdown", self.name, left)

    def summary(self) -> dict[str, Any]:
        return {"url": self.url, "types": sorted(self.types), "sent": self.sent, "queueDepth": self.depth,
                "queueBytes": self.bytes, "dropped": dict(self.dropped)}


class Sink(QueuedSink):
    """HTTP: POST each event to the detector's URL (the default transport)."""

    def __init__(self, config: SinkConfig, client: aiohttp.ClientSession, policy: RetryPolicy, metrics: LoggerMetrics,
                 queue_size: int, workers: int = 4, queue_bytes: int = 64 * 1024 * 1024,
                 max_event_bytes: int = 32 * 1024 * 1024):
        super().__init__(config.name, config.url, config.types, policy, metrics, queue_size, workers,
                         queue_bytes=queue_bytes, max_event_bytes=max_event_bytes)
        self.client = client

    async def _deliver(self, event: Event) -> None:
        try:
            msg = event.message()
        except Exception as e:  # noqa: BLE001 - e.g. an attribute the SDK refuses
            self._warn("cannot encode %s event: %s", event.kind, e)
            self._drop("encode_error")
            return
        last = ""
        for attempt in range(self.policy.retries + 1):
            if attempt:
                self._m_retries.inc()
                await asyncio.sleep(self.policy.delay(attempt - 1))
            try:
                async with self.client.post(self.url, data=msg.body, headers=msg.headers) as r:
                    status = r.status
                    text = (await r.read())[:200].decode("utf-8", "replace")
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if status < 300:
                self.sent += 1
                self._m_sent.inc()
                return
            last = f"HTTP {status}: {text}"
            if status < 500 and status not in RETRYABLE_STATUS:
                self._warn("rejected a %s event: %s", event.kind, last)
                self._drop("rejected")
                return
        self._warn("dropping a %s event after %d attempts: %s", event.kind, self.policy.retries + 1, last)
        self._drop("retries_exhausted")
