"""NATS JetStream for the logger and the detectors (DESIGN §13): the stream, the consumers, the publisher.

The logger and every detector call `ensure` with the same arguments, so whichever starts
first creates the monitor's stream and the detectors' durable consumers and the others
find them as they are. The stream keeps a message while some consumer still wants it
(interest retention) and refuses new ones beyond ``maxBytes`` (discard new), so a lagging
detector costs disk up to a bound, never an event silently lost: the refusal is a counted
drop at the logger. The logger creates the consumers of every planned detector before it
publishes anything, so no event published before a detector started is missed.

`JetStreamSink` is the logger's side: the same bounded queue, workers, retry policy and
drop accounting as the HTTP `Sink` (`QueuedSink`), but each event is published once to
``vigil.<ns>.<monitor>.<kind>.<partition>`` with its ``ce-`` headers and a ``Nats-Msg-Id``
(`vigil.transport.names`), so a retry the server already holds is acknowledged as a
duplicate, not stored twice. It also exports consumer lag,
``vigil_transport_pending_messages{consumer}`` (pending plus unacknowledged), for KEDA.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from vigil.logger.metrics import LoggerMetrics
from vigil.logger.sinks import Event, QueuedSink, RetryPolicy
from vigil.transport import TransportConfig, names

log = logging.getLogger(__name__)

#: Unacknowledged events one consumer may have out (all replicas together).
MAX_ACK_PENDING = 20_000
#: How long the server remembers message ids to drop duplicates.
DUPLICATE_WINDOW_SECONDS = 120.0
#: JetStream error codes of a publish the stream refuses (full: maximum bytes / messages exceeded).
REFUSED_CODES = frozenset({10047, 10077, 10027})
LAG_INTERVAL_SECONDS = 2.0


@dataclass(frozen=True)
class ConsumerSpec:
    """One detector's durable consumer: its name and the event kinds (and partitions) it reads."""

    component: str
    kinds: tuple[str, ...]
    partitions: Optional[tuple[int, ...]] = None

    @property
    def name(self) -> str:
        return names.consumer_name(self.component, self.partitions)


async def connect(config: TransportConfig, name: str) -> Any:
    """A NATS connection that reconnects forever (raises if the first connect fails)."""
    return await nats.connect(config.url or "nats://127.0.0.1:4222", name=name, connect_timeout=2,
                              allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                              error_cb=_quiet, disconnected_cb=_quiet_event, reconnected_cb=_quiet_event)


async def _quiet(exc: Exception) -> None:  # nats-py logs a traceback per failed reconnect otherwise
    log.debug("nats: %s", exc)


async def _quiet_event() -> None:
    return None


def stream_config(config: TransportConfig, namespace: str, monitor: str) -> StreamConfig:
    return StreamConfig(name=names.stream_name(namespace, monitor), subjects=[names.prefix(namespace, monitor) + ".>"],
                        retention=RetentionPolicy.INTEREST, discard=DiscardPolicy.NEW, max_bytes=config.max_bytes,
                        storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_SECONDS)


def consumer_specs(sinks: Iterable[Any], config: TransportConfig) -> list[ConsumerSpec]:
    """The durable consumers of the logger's sinks (`vigil.logger.settings.SinkConfig`): one per detector,
    or, for a detector whose replicas each take a share of the partitions (``consumer_replicas``), one per
    replica on its share — the same names and filters each replica binds to (`DetectorSettings.own_partitions`)."""
    out = []
    for s in sinks:
        n = getattr(s, "consumer_replicas", None) or 1
        if n == 1:
            out.append(ConsumerSpec(s.name, tuple(s.types)))
        else:
            out += [ConsumerSpec(s.name, tuple(s.types), names.replica_partitions(i, n, config.partitions))
                    for i in range(n)]
    return out


def consumer_config(config: TransportConfig, namespace: str, monitor: str, spec: ConsumerSpec) -> ConsumerConfig:
    subjects = names.filter_subjects(namespace, monitor, spec.kinds, spec.partitions)
    one = len(subjects) == 1
    return ConsumerConfig(durable_name=spec.name, ack_policy=AckPolicy.EXPLICIT, ack_wait=config.ack_wait_seconds,
                          max_ack_pending=MAX_ACK_PENDING, filter_subject=subjects[0] if one else None,
                          filter_subjects=None if one else subjects)


async def ensure(js: Any, config: TransportConfig, namespace: str, monitor: str,
                 consumers: Iterable[ConsumerSpec] = ()) -> str:
    """Create (or bring up to date) the monitor's stream and these durable consumers; return the stream name."""
    sc = stream_config(config, namespace, monitor)
    try:
        await js.add_stream(sc)
    except nats.js.errors.BadRequestError:  # exists with another config (e.g. maxBytes changed)
        await js.update_stream(sc)
    for spec in consumers:
        cc = consumer_config(config, namespace, monitor, spec)
        try:
            await js.add_consumer(sc.name, cc)
        except nats.js.errors.BadRequestError:
            await js.delete_consumer(sc.name, spec.name)  # its filter changed: the old one would keep stale interest
            await js.add_consumer(sc.name, cc)
    return str(sc.name)


async def pending(js: Any, stream: str, consumer: str) -> int:
    """Messages a consumer has not acknowledged yet: not yet delivered plus delivered and unacknowledged."""
    info = await js.consumer_info(stream, consumer)
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)


class JetStreamSink(QueuedSink):
    """The logger's JetStream publisher (see the module docstring)."""

    def __init__(self, config: TransportConfig, consumers: Sequence[ConsumerSpec], namespace: str, monitor: str,
                 policy: RetryPolicy, metrics: LoggerMetrics, queue_size: int, workers: int = 4,
                 queue_bytes: int = 64 * 1024 * 1024, max_event_bytes: int = 32 * 1024 * 1024,
                 timeout: float = 5.0):
        kinds = sorted({k for c in consumers for k in c.kinds})
        super().__init__("jetstream", config.url or "", kinds, policy, metrics, queue_size, workers,
                         queue_bytes=queue_bytes, max_event_bytes=max_event_bytes)
        self.config = config
        self.consumers = list(consumers)
        self.namespace, self.monitor = namespace, monitor
        self.stream = names.stream_name(namespace, monitor)
        self.timeout = timeout
        self.duplicates = 0  # publishes the server already held (a retry of a delivered event)
        self.lag: dict[str, Optional[int]] = {c.name: None for c in self.consumers}
        self._nc: Any = None
        self._js: Any = None
        self._connected = asyncio.Event()
        self._m_pending = metrics.service.gauge("vigil_transport_pending_messages",
                                                "Events a detector's consumer has not acknowledged yet "
                                                "(pending plus unacknowledged)", ("consumer",))
        for c in self.consumers:
            self._m_pending.labels(consumer=c.name)

    def start(self) -> None:
        super().start()
        self._tasks.append(asyncio.create_task(self._connect_loop(), name="jetstream-connect"))

    async def _connect_loop(self) -> None:
        """Connect and set up the stream, retrying every second; then poll consumer lag."""
        while self._js is None:
            try:
                nc = await connect(self.config, f"vigil-logger-{self.monitor}")
                js = nc.jetstream(timeout=self.timeout)
                await ensure(js, self.config, self.namespace, self.monitor, self.consumers)
                self._nc, self._js = nc, js
                self._connected.set()
                log.info("jetstream: publishing to stream %s on %s", self.stream, self.config.url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - server down or not ready yet: keep serving, retry
                self._warn("cannot reach NATS at %s: %s", self.config.url, exc)
                await asyncio.sleep(1.0)
        while True:
            await self.poll_lag()
            await asyncio.sleep(LAG_INTERVAL_SECONDS)

    async def poll_lag(self) -> None:
        for c in self.consumers:
            try:
                self.lag[c.name] = await pending(self._js, self.stream, c.name)
                self._m_pending.labels(consumer=c.name).set(self.lag[c.name])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - lag is best effort; the last value stays
                log.debug("jetstream: lag of %s unknown: %s", c.name, exc)

    async def _deliver(self, event: Event) -> None:
        try:
            msg = event.message()
        except Exception as e:  # noqa: BLE001 - e.g. an attribute the SDK refuses
            self._warn("cannot encode %s event: %s", event.kind, e)
            self._drop("encode_error")
            return
        iid = str(event.attributes.get("inferenceid") or "")
        subject = names.event_subject(self.namespace, self.monitor, event.kind, iid, self.config.partitions)
        headers = {**msg.headers, "Nats-Msg-Id": names.message_id(event.kind, iid, str(event.attributes["id"]))}
        last = ""
        for attempt in range(self.policy.retries + 1):
            if attempt:
                self._m_retries.inc()
                await asyncio.sleep(self.policy.delay(attempt - 1))
            if self._js is None:
                last = "not connected to NATS yet"
                continue
            try:
                ack = await self._js.publish(subject, msg.body, timeout=self.timeout, stream=self.stream,
                                             headers=dict(headers))
            except nats.js.errors.APIError as e:
                last = f"JetStream error {e.err_code}: {e.description}"
                if e.err_code in REFUSED_CODES:  # the stream is full: retrying now would be refused again
                    self._warn("stream %s refused a %s event: %s", self.stream, event.kind, last)
                    self._drop("refused")
                    return
                continue
            except (nats.errors.Error, asyncio.TimeoutError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if ack.duplicate:
                self.duplicates += 1
            self.sent += 1
            self._m_sent.inc()
            return
        self._warn("dropping a %s event after %d attempts: %s", event.kind, self.policy.retries + 1, last)
        self._drop("retries_exhausted")

    async def stop(self, grace: float) -> None:
        await super().stop(grace)
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._nc = self._js = None

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update({"transport": "jetstream", "stream": self.stream, "connected": self._js is not None,
                    "duplicates": self.duplicates, "pending": dict(self.lag)})
        return out
