"""The FastAPI app around a detector: CloudEvents in, status, metrics, health.

`POST /` takes a CloudEvent (binary or structured mode) of our, KServe's or Seldon's
inference types, validates it at the edge (size, content type, CloudEvent attributes,
JSON, numbers, feature count), and hands the detector a decoded `InferenceEvent`.
Request instances are read by `vigil.instances.decode_table` (named rows, category
strings); rows holding a missing value are skipped — the detector gets the rest
(`InferenceEvent.skipped` says which) — and counted in ``vigil_instances_skipped_total{reason}``;
an event most of whose rows were skipped counts as skipped in the recent health (Degraded).
Every rejection is a 4xx `{"error": ..., "reason": ...}` counted in `vigil_events_rejected_total{reason}`
(`vigil.edge`);
the service keeps running and the detector never sees the bad event. The reply is a
binary-mode CloudEvent `dev.vigil.detection.<name>` that keeps the incoming id.

With ``transport.type: jetstream`` the same `handle` (parse, de-duplicate, process, reply)
takes the events a durable pull consumer fetches from the monitor's stream
(`vigil_detectors.frame.consumer`); ``POST /`` keeps working beside it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Optional

from cloudevents.core.exceptions import BaseCloudEventException
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from vigil import components
from vigil.edge import Edge, check_declared_length, check_headers, check_read_length, parse_json
from vigil.errors import InvalidInput, NotReady, Rejected, UnsupportedMediaType
from vigil.events import SOURCE_PREFIX, event_kind, inference_id
from vigil.telemetry import ServiceMetrics
from vigil_detectors.frame import wire
from vigil_detectors.frame.base import Detector, InferenceEvent
from vigil_detectors.frame.checkpoint import CheckpointError
from vigil_detectors.frame.dedup import RecentIds

_JSON_TYPES = ("application/json", "application/cloudevents+json", "text/json")
_STRUCTURED = "application/cloudevents+json"
#: CloudEvents 1.0 REQUIRED attributes; the SDK would invent an id, so the edge checks them.
REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
REJECT_REASONS = ("too_large", "not_ready", "content_type", "content_encoding", "duplicate_header",
                  "headers_too_large", "bad_cloudevent", "bad_json", "too_deep", "unknown_type", "bad_body",
                  "bad_shape", "non_numeric", "out_of_range", "feature_count", "not_found", "method_not_allowed",
                  "internal", "unauthorized", "checkpoint", "bad_category")


class _Edge(Edge):
    """The shared edge plus what every detector app adds: processing time and readiness."""

    def __init__(self, name: str, metrics: ServiceMetrics):
        super().__init__(metrics, name, kinds=("request", "response", "feedback", "other"), reasons=REJECT_REASONS)
        self.duration = metrics.histogram("vigil_detector_processing_seconds",
                                          "Time to process one accepted event.",
                                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
        self.ready = metrics.gauge("vigil_detector_ready", "1 once the detector artifact is loaded.")
        self.duplicates = metrics.counter("vigil_events_duplicate_total",
                                          "Events dropped because this detector already processed their id.")
        self.counts["duplicates"] = 0
        self.name = name
        self.seen = RecentIds()  # ce-ids processed recently (delivery de-duplication)
        self.in_flight: set[int] = set()  # ce-ids being processed right now (a retry of one waits: 429)


def _header_dict(headers) -> dict[str, str]:
    """``dict(headers)`` for Starlette `Headers` without its O(n) lookup per key (first value wins);
    a dict (the ASGI path's, JetStream's) as it is."""
    if isinstance(headers, dict):
        return headers
    raw = getattr(headers, "raw", None)
    if raw is None:
        return dict(headers)
    return raw_header_dict(raw)


def raw_header_dict(raw) -> dict[str, str]:
    """ASGI ``scope["headers"]`` as a dict of lower-case names, the first value winning (as Starlette's
    `Headers.get`)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}


class Answer(Response):
    """A Response given its raw header list instead of building it (Starlette's `init_headers`
    with its `MutableHeaders` was a tenth of a one-row event's CPU): status, body and the raw
    headers `Response(content, headers=..., status_code=...)` would make. tests/test_frame.py
    compares the two."""

    def __init__(self, status_code: int, body: bytes = b"", raw_headers: Optional[list] = None):  # noqa: D107
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = raw_headers if raw_headers is not None else [(b"content-length", b"0")]


def answer(status_code: int, body: bytes = b"", headers: Optional[dict[str, str]] = None) -> Answer:
    """`Answer` of what ``Response(body, status_code=, headers=)`` sends."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if status_code >= 200 and status_code not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    return Answer(status_code, body, raw)


def _accepted() -> Answer:  # a fresh one each time: middleware may change a response's headers
    return Answer(202, b"", [(b"content-length", b"0")])


def _check_required(headers, body: bytes, structured: bool) -> None:
    """Missing REQUIRED CloudEvents attributes are a 400 (the SDK fills some in)."""
    if structured:
        doc = parse_json(body, "structured CloudEvent")
        if not isinstance(doc, dict):
            raise InvalidInput("bad_cloudevent", f"a structured CloudEvent must be a JSON object, "
                                                 f"got {type(doc).__name__}")
        present = doc
    else:
        present = {name: headers.get(f"ce-{name}") for name in REQUIRED_ATTRIBUTES}
    missing = [name for name in REQUIRED_ATTRIBUTES if present.get(name) in (None, "")]
    if missing:
        where = "" if structured else "ce-"
        raise InvalidInput("bad_cloudevent", "not a valid CloudEvent: missing required attribute(s) "
                                             + ", ".join(where + m for m in missing))


_SKIP_WHY = {"missing": "hold a missing value", "unseen": "hold a category code outside the declared ones"}


def _skips(ev: InferenceEvent) -> dict[str, int]:
    """``{reason: instances}`` skipped in a decoded request event."""
    if ev.skipped is None or ev.decoded is None or ev.decoded.complete or not ev.skipped.any():
        return {}
    missing = int(ev.decoded.incomplete.sum())
    out = {"missing": missing}
    if int(ev.skipped.sum()) > missing:
        out["unseen"] = int(ev.skipped.sum()) - missing
    return out


def _parse(headers, body: bytes, settings, detector: Detector) -> InferenceEvent:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise UnsupportedMediaType("content_type", f"unsupported content type {content_type or '(none)'!r}; "
                                                   "send application/json (binary mode) or "
                                                   "application/cloudevents+json")
    _check_required(headers, body, content_type == _STRUCTURED)
    try:
        attrs, data = wire.read_event(_header_dict(headers), body)  # the SDK's reading, fast for the usual event
    except RecursionError:
        raise InvalidInput("too_deep", "event nests too deeply") from None
    except (BaseCloudEventException, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = "bad_json" if isinstance(exc, json.JSONDecodeError) else "bad_cloudevent"
        raise InvalidInput(reason, f"not a valid CloudEvent: {exc}") from None
    kind = event_kind(attrs.get("type"))
    if kind is None:
        raise InvalidInput("unknown_type", f"unknown event type {attrs.get('type')!r}")
    if isinstance(data, (bytes, str)):
        data = parse_json(data.encode() if isinstance(data, str) else data, "event data")
    ev = InferenceEvent(id=str(attrs.get("id")), type=attrs["type"], kind=kind, inference_id=inference_id(attrs),
                        attributes=attrs, data=data)
    if kind not in detector.accepts:
        return ev
    if kind == "request":
        detector.decode_request(ev)
    elif kind == "response":
        ev.outputs = detector.decode_outputs(data)
    elif not isinstance(data, dict):
        raise InvalidInput("bad_body", "feedback data must be a JSON object with 'truth'")
    return ev


def _reply(detector: Detector, settings, incoming: InferenceEvent, body: dict) -> Response:
    attrs = {"type": components.get(detector.name).reply_type, "source": f"{SOURCE_PREFIX}/{settings.monitor}/{detector.name}",
             "id": incoming.id, "datacontenttype": "application/json"}
    if incoming.inference_id:
        attrs["inferenceid"] = incoming.inference_id
    headers, content = wire.reply(attrs, body)
    return answer(200, content, headers)


class _DetectorApp(FastAPI):
    """A FastAPI app that serves its hot path, event ingestion (``POST /``), straight from ASGI.

    For a one-row event, FastAPI's middleware stack, router and dependency solving cost
    about 40 % of the service's CPU (py-spy, drift detector under `bench/bench_drift.py`),
    and Starlette's `Request`/`Response` objects another tenth. `fast_ingest(scope, receive)`
    reads the raw ASGI headers and body through the same edge checks (headers, token, size
    limit) and answers with the same responses as the normal route, which is also
    registered (OpenAPI, other mounts). Every other path goes through FastAPI unchanged.
    """

    fast_ingest: Optional[Callable[[Any, Any], Awaitable[Optional[Response]]]] = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.fast_ingest is not None and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/" and not self.root_path):
            response = await self.fast_ingest(scope, receive)
            if response is None:  # the client went away before its body arrived
                return
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": response.raw_headers})
            await send({"type": "http.response.body", "body": response.body})
            if response.background is not None:
                await response.background()
            return
        await super().__call__(scope, receive, send)


async def read_asgi_body(receive, declared: Optional[str], max_bytes: int) -> Optional[bytes]:
    """The body of an ASGI request, refused (413) as `vigil.edge.read_body` refuses it; None when
    the client disconnected first."""
    check_declared_length(declared, max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        check_read_length(size, max_bytes)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def create_detector_app(detector_cls: type[Detector], settings) -> FastAPI:
    metrics = ServiceMetrics(settings.monitor, settings.namespace)
    detector = detector_cls(settings, metrics)
    edge = _Edge(detector.name, metrics)
    skipped: dict[str, int] = {}  # instances skipped, by reason, for /status
    log = edge.log  # vigil.<detector name>
    state: dict[str, Any] = {"ready": False, "error": None}

    async def _load():
        try:
            await asyncio.to_thread(detector.load)
            await detector.start()
            state["ready"] = True
            edge.ready.set(1)
            log.info("%s detector ready", detector.name)
        except Exception as exc:  # keep serving /healthz and /status with the reason
            state["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("%s detector failed to load", detector.name)

    consumer: Optional[Any] = None  # the JetStream consumer, when the transport is jetstream

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = asyncio.create_task(_load())
        if consumer is not None:
            consumer.start(loader)
        yield
        if consumer is not None:
            await consumer.stop()
        loader.cancel()
        if state["ready"]:
            await detector.stop()

    app = _DetectorApp(title=f"vigil {detector.name} detector", lifespan=lifespan)
    app.state.detector = detector
    app.state.metrics = metrics
    app.state.edge = edge  # detector routers (the explainer's /explain) reject through it too
    edge.install(app)

    async def handle(headers, body: bytes, extra: Optional[dict] = None) -> Response:
        """One event, whichever transport brought it: parse, de-duplicate, process, reply."""
        try:
            if not state["ready"]:
                raise NotReady("not_ready", "detector is not ready yet (artifact loading)")
            started = time.perf_counter()
            event = _parse(headers, body, settings, detector)
        except Rejected as exc:
            return edge.reject(exc)
        if extra:
            event.extra.update(extra)
        edge.count_received(event.kind if event.kind in ("request", "response", "feedback") else "other")
        if event.kind not in detector.accepts:
            return Answer(204, b"", [])
        key = edge.seen.key(event.attributes)
        if key in edge.seen:  # a retry of an event already processed: never counted twice
            edge.duplicates.inc()
            edge.counts["duplicates"] += 1
            return _accepted()
        if key in edge.in_flight:  # a retry while the first delivery is still being processed (a slow event,
            # e.g. a batch of images, outlasting the sender's timeout): try again later, never process it twice
            return JSONResponse({"error": "this event is still being processed; retry later"}, status_code=429,
                                headers={"retry-after": "1"})
        edge.in_flight.add(key)
        try:
            result: Optional[dict] = await detector.process(event)
        except Rejected as exc:
            return edge.reject(exc)
        except CheckpointError as exc:
            return edge.reject(Rejected(503, "checkpoint", f"event not kept: {exc}"))
        except Exception as exc:
            log.exception("%s detector failed on event %s", detector.name, event.id)
            return edge.reject(Rejected(500, "internal", f"{type(exc).__name__}: {exc}"))
        finally:
            edge.in_flight.discard(key)
        edge.seen.add(key)
        skips = _skips(event)
        for reason, n in skips.items():
            metrics.skipped.labels(reason=reason).inc(n)
            skipped[reason] = skipped.get(reason, 0) + n
        most = sum(skips.values()) * 2 > event.rows_received
        edge.accepted((next(iter(skips)), f"{sum(skips.values())} of {event.rows_received} instances "
                       + " or ".join(_SKIP_WHY[r] for r in skips)) if most else None)
        edge.duration.observe(time.perf_counter() - started)
        if result is None:
            return _accepted()
        return _reply(detector, settings, event, result)

    @app.post("/")
    async def ingest(request: Request) -> Response:
        try:
            edge.check_auth(request)
            body = await edge.read(request)
        except Rejected as exc:
            return edge.reject(exc)
        return await handle(request.headers, body)

    async def fast_ingest(scope, receive) -> Optional[Response]:
        """``POST /`` from raw ASGI: the checks of `ingest`, without Starlette's `Request`."""
        raw = scope["headers"]
        try:
            check_headers(raw)
            headers = raw_header_dict(raw)
            edge.check_authorization(headers.get("authorization"))
            body = await read_asgi_body(receive, headers.get("content-length"), edge.max_body_bytes)
        except Rejected as exc:
            return edge.reject(exc)
        if body is None:
            return None
        return await handle(headers, body)

    app.fast_ingest = fast_ingest
    transport = getattr(settings, "transport", None)
    if transport is not None and transport.jetstream:
        from vigil_detectors.frame.consumer import JetStreamConsumer

        consumer = JetStreamConsumer(detector, settings, metrics, handle, log)
        app.state.consumer = consumer

    @app.get("/status")
    async def status() -> dict:
        out = {"component": detector.name, "ready": state["ready"], "monitor": settings.monitor,
               "namespace": settings.namespace, "events": dict(edge.counts), "recent": edge.health.snapshot(),
               "instancesSkipped": dict(skipped)}
        if state["error"]:
            out["error"] = state["error"]
        if detector.checkpoint.error:
            out["ready"] = False
            out["error"] = detector.checkpoint.error
        if state["ready"]:
            out.update(detector.status())
        if consumer is not None:
            out["transport"] = consumer.status()
        return out

    @app.get("/metrics")
    async def prometheus() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state["ready"] and detector.checkpoint.error:
            return JSONResponse({"status": "checkpoint_failed", "error": detector.checkpoint.error}, status_code=503)
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "loading" if not state["error"] else "failed", "error": state["error"]},
                            status_code=503)

    for router in detector.routers():
        app.include_router(router)
    return app
