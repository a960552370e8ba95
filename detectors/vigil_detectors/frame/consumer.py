"""A detector as a durable pull consumer of its monitor's JetStream stream (DESIGN §13).

Once the detector is loaded, `JetStreamConsumer` connects, makes sure the stream and the
detector's durable consumer exist (`vigil.transport.jetstream.ensure`, the same call the
logger makes), and loops: fetch up to `Detector.fetch_batch` events, hand each to the
frame's `handle` — the very parse / de-duplicate / process / reply path of ``POST /`` —
and settle it by the answer:

- 2xx: acknowledged; a reply body (a detection) is published on
  ``vigil.<ns>.<monitor>.detection.<component>`` first;
- 503 (not ready, checkpoint not written) or 429 (its first delivery is still being
  processed): negatively acknowledged with a delay, and in an
  `ordered` detector the rest of the batch with it, so the stream order holds;
- any other 4xx/5xx: terminated (bad input, already counted as rejected at the edge):
  redelivering it would be refused again.

Several replicas on one durable consumer share its events (outlier). An unordered detector
processes a batch concurrently, so its own batcher sees the whole fetch at once; an ordered
one (drift, explainer) one event after another. While a batch is being processed every
fetched, unsettled event gets an ``in_progress`` heartbeat each third of the ack wait, so a
slow explanation is not redelivered to another replica. A detector that checkpoints the
stream sequence with its state (drift, `Detector.holds`) acknowledges only after the
checkpoint and, after a restart, acknowledges without processing every redelivered event it
already holds: no instance lost, none counted twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Optional

import nats.errors
from fastapi import Response

from vigil import components
from vigil.telemetry import ServiceMetrics
from vigil.transport import names
from vigil.transport.jetstream import ConsumerSpec, connect, ensure
from vigil_detectors.frame.base import Detector

Handle = Callable[..., Awaitable[Response]]
OUTCOMES = ("ack", "term", "nak", "held")
_REPLY_HEADERS = ("content-type",)
#: Answers that mean "not kept yet": redelivered later, never terminated.
RETRY_LATER = frozenset({429, 503})


class JetStreamConsumer:
    def __init__(self, detector: Detector, settings: Any, metrics: ServiceMetrics, handle: Handle,
                 log: logging.Logger):
        self.detector = detector
        self.settings = settings
        self.config = settings.transport
        self.handle = handle
        self.log = log
        row = components.get(detector.name)
        # one replica's share of the partitions (metrics), or None: every partition
        partitions = settings.own_partitions() if hasattr(settings, "own_partitions") else None
        # a row whose kinds depend on its block (drift with preprocess model-output reads responses): the detector's own
        kinds = tuple(sorted(detector.accepts)) if row.consumes_for else tuple(row.consumes)
        self.spec = ConsumerSpec(detector.name, kinds or tuple(sorted(detector.accepts)),
                                 partitions)
        self.stream = names.stream_name(settings.namespace, settings.monitor)
        self.reply_subject = names.reply_subject(settings.namespace, settings.monitor, detector.name)
        self.counts = {k: 0 for k in OUTCOMES}
        self.connected = False
        self._m = metrics.counter("vigil_transport_messages_total",
                                  "Events fetched from the stream, by how they were settled", ("outcome",))
        self._m_fetch = metrics.histogram("vigil_transport_fetch_size", "Events per fetch from the stream",
                                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        for k in OUTCOMES:
            self._m.labels(outcome=k)
        self._task: Optional[asyncio.Task] = None
        self._nc: Any = None
        self._js: Any = None

    def start(self, loaded: Awaitable[Any]) -> None:
        self._task = asyncio.create_task(self._run(loaded), name=f"jetstream-{self.detector.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._nc = None

    def status(self) -> dict[str, Any]:
        return {"type": "jetstream", "url": self.config.url, "stream": self.stream, "consumer": self.spec.name,
                "connected": self.connected, "messages": dict(self.counts)}

    def _count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] += n
        self._m.labels(outcome=outcome).inc(n)

    async def _run(self, loaded: Awaitable[Any]) -> None:
        await loaded  # the artifact (and a restored checkpoint) first: only then does `holds` know
        psub = None
        while psub is None:
            try:
                self._nc = await connect(self.config, f"vigil-{self.detector.name}-{self.settings.monitor}")
                self._js = self._nc.jetstream(timeout=5.0)
                await ensure(self._js, self.config, self.settings.namespace, self.settings.monitor, [self.spec])
                psub = await self._js.pull_subscribe_bind(durable=self.spec.name, stream=self.stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS not up yet: keep serving HTTP, retry
                self.log.warning("jetstream: cannot consume %s/%s at %s: %s; retrying", self.stream, self.spec.name,
                                 self.config.url, exc)
                if self._nc is not None:
                    await self._nc.close()
                    self._nc = None
                await asyncio.sleep(1.0)
        self.connected = True
        self.log.info("jetstream: consuming %s as %s (batches of %d)", self.stream, self.spec.name,
                      self.detector.fetch_batch)
        while True:
            try:
                msgs = await psub.fetch(self.detector.fetch_batch, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - disconnected: nats-py reconnects, fetch again
                self.log.debug("jetstream fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self._m_fetch.observe(len(msgs))
            await self._batch(msgs)

    async def _batch(self, msgs: Sequence[Any]) -> None:
        todo = []
        for m in msgs:
            if self.detector.holds(m.metadata.sequence.stream):
                await self._settle(m, "held")  # in the checkpoint already: acknowledged, not processed again
            else:
                todo.append(m)
        if not todo:
            return
        open_ = set(range(len(todo)))
        beat = asyncio.create_task(self._heartbeat(todo, open_))
        try:
            if self.detector.ordered:
                for i, m in enumerate(todo):
                    r = await self._handle(m)
                    if r.status_code in RETRY_LATER:  # not kept: this one and the rest again, in order, later
                        for j in range(i, len(todo)):
                            await self._settle(todo[j], "nak")
                            open_.discard(j)
                        return
                    await self._answer(m, r)
                    open_.discard(i)
            else:
                answers = await asyncio.gather(*(self._handle(m) for m in todo))
                for i, (m, r) in enumerate(zip(todo, answers, strict=True)):
                    await self._answer(m, r)
                    open_.discard(i)
        finally:
            beat.cancel()

    async def _handle(self, m: Any) -> Response:
        return await self.handle(m.headers or {}, m.data, {"sequence": m.metadata.sequence.stream})

    async def _heartbeat(self, todo: Sequence[Any], open_: set[int]) -> None:
        every = max(0.5, self.config.ack_wait_seconds / 3)
        while True:
            await asyncio.sleep(every)
            for i in list(open_):
                try:
                    await todo[i].in_progress()
                except Exception:  # noqa: BLE001 - a lost heartbeat means at worst a redelivery (de-duplicated)
                    pass

    async def _answer(self, m: Any, r: Response) -> None:
        status = r.status_code
        if status < 300:
            if status == 200 and r.body:
                await self._publish_reply(r)
            await self._settle(m, "ack")
        elif status in RETRY_LATER:
            await self._settle(m, "nak")
        else:
            await self._settle(m, "term")

    async def _publish_reply(self, r: Response) -> None:
        headers = {k: v for k, v in r.headers.items() if k.startswith("ce-") or k in _REPLY_HEADERS}
        try:
            await self._js.publish(self.reply_subject, bytes(r.body), headers=headers)
        except Exception as exc:  # noqa: BLE001 - a reply nobody keeps must not hold up the detector
            self.log.debug("jetstream: reply not published: %s", exc)

    async def _settle(self, m: Any, outcome: str) -> None:
        try:
            if outcome in ("ack", "held"):
                await m.ack()
            elif outcome == "nak":
                await m.nak(delay=1.0)
            else:
                await m.term()
        except Exception as exc:  # noqa: BLE001 - unsettled: redelivered after the ack wait, then de-duplicated
            self.log.debug("jetstream: could not settle a message (%s): %s", outcome, exc)
        self._count(outcome)
