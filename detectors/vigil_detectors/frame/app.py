"""The FastAPI app around a detector: CloudEvents in, status, metrics, health.

`POST /` takes a CloudEvent (binary or structured mode) of our, KServe's or Seldon's
inference types, validates it at the edge (size, content type, CloudEvent attributes,
JSON, numbers, feature count), and hands the detector a decoded `InferenceEvent`.
Every rejection is a 4xx `{"error": ...}` counted in `vigil_events_rejected_total{reason}`;
the service keeps running and the detector never sees the bad event. The reply is a
binary-mode CloudEvent `dev.vigil.detection.<name>` that keeps the incoming id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Optional

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from vigil import components
from vigil.auth import UNAUTHORIZED, BearerAuth, token_from_env
from vigil.bodies import BodyTooLarge, read_limited
from vigil.events import SOURCE_PREFIX, PayloadError, decode_instances, event_kind, inference_id
from vigil.health import RecentHealth
from vigil.telemetry import ServiceMetrics
from vigil_detectors.frame.base import Detector, InferenceEvent
from vigil_detectors.frame.checkpoint import CheckpointError
from vigil_detectors.frame.dedup import RecentIds

log = logging.getLogger("vigil.detector")

_JSON_TYPES = ("application/json", "application/cloudevents+json", "text/json")
REJECT_REASONS = ("too_large", "not_ready", "content_type", "bad_cloudevent", "bad_json", "unknown_type", "bad_body",
                  "bad_shape", "non_numeric", "out_of_range", "feature_count", "internal", UNAUTHORIZED,
                  "checkpoint")


class _Edge:
    """Metrics and checks shared by every detector app."""

    def __init__(self, name: str, metrics: ServiceMetrics):
        self.received = metrics.counter("vigil_events_received_total", "Events received, by kind.", ["type"])
        self.rejected = metrics.counter("vigil_events_rejected_total", "Events rejected at the edge, by reason.",
                                        ["reason"])
        self.duration = metrics.histogram("vigil_detector_processing_seconds",
                                          "Time to process one accepted event.",
                                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
        self.ready = metrics.gauge("vigil_detector_ready", "1 once the detector artifact is loaded.")
        self._received = {k: self.received.labels(type=k) for k in ("request", "response", "feedback", "other")}
        for reason in REJECT_REASONS:  # series exist from the start, so rate() sees the first rejection
            self.rejected.labels(reason=reason)
        self.duplicates = metrics.counter("vigil_events_duplicate_total",
                                          "Events dropped because this detector already processed their id.")
        self.counts = {"received": 0, "rejected": 0, "duplicates": 0}
        self.name = name
        self.health = RecentHealth(name)  # recent rejections for /status (Degraded)
        self.seen = RecentIds()  # ce-ids processed recently (delivery de-duplication)
        self.auth = BearerAuth(token_from_env())

    def unauthorized(self, request: Request) -> Optional[JSONResponse]:
        """The 401 answer when a token is configured and the request does not carry it, else None."""
        if self.auth.allows(request.headers.get("authorization")):
            return None
        return self.reject(UNAUTHORIZED, self.auth.MESSAGE, 401)

    def reject(self, reason: str, message: str, status: int = 400) -> JSONResponse:
        self.rejected.labels(reason=reason).inc()
        self.counts["rejected"] += 1
        if reason != "not_ready":  # loading at start-up is not a fault of the input
            self.health.rejected(reason, message)
        return JSONResponse({"error": message, "reason": reason}, status_code=status)


def _header_dict(headers) -> dict[str, str]:
    """``dict(headers)`` for Starlette `Headers` without its O(n) lookup per key (first value wins)."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return dict(headers)
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}


def _parse(headers, body: bytes, settings, detector: Detector) -> InferenceEvent:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise PayloadError("content_type", f"unsupported content type {content_type or '(none)'!r}; "
                                           "send application/json (binary mode) or application/cloudevents+json",
                           status=415)
    try:
        event = ce_http.from_http_event(ce_http.HTTPMessage(headers=_header_dict(headers), body=body))
    except (BaseCloudEventException, ValueError, TypeError, KeyError) as exc:
        reason = "bad_json" if isinstance(exc, json.JSONDecodeError) else "bad_cloudevent"
        raise PayloadError(reason, f"not a valid CloudEvent: {exc}") from None
    attrs = event.get_attributes()
    kind = event_kind(attrs.get("type"))
    if kind is None:
        raise PayloadError("unknown_type", f"unknown event type {attrs.get('type')!r}")
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise PayloadError("bad_json", "event data is not valid JSON") from None
    ev = InferenceEvent(id=str(attrs.get("id")), type=attrs["type"], kind=kind, inference_id=inference_id(attrs),
                        attributes=attrs, data=data)
    if kind not in detector.accepts:
        return ev
    if kind == "request":
        ev.instances = decode_instances(data, settings.n_features)
    elif kind == "response":
        ev.outputs = detector.decode_outputs(data)
    elif not isinstance(data, dict):
        raise PayloadError("bad_body", "feedback data must be a JSON object with 'truth'")
    return ev


def _reply(detector: Detector, settings, incoming: InferenceEvent, body: dict) -> Response:
    attrs = {"type": components.get(detector.name).reply_type, "source": f"{SOURCE_PREFIX}/{settings.monitor}/{detector.name}",
             "id": incoming.id, "datacontenttype": "application/json"}
    if incoming.inference_id:
        attrs["inferenceid"] = incoming.inference_id
    msg = ce_http.to_binary_event(CloudEvent(attributes=attrs, data=body))
    return Response(content=msg.body, headers=msg.headers, status_code=200)


class _DetectorApp(FastAPI):
    """A FastAPI app that serves its hot path, event ingestion (``POST /``), straight from ASGI.

    For a one-row event, FastAPI's middleware stack, router and dependency solving cost
    about 40 % of the service's CPU (py-spy, drift detector under `bench/bench_drift.py`).
    The same `ingest(request)` handler answers either way, with the same responses; it
    is also registered as a normal route (OpenAPI, other mounts). Every other path goes
    through FastAPI unchanged.
    """

    fast_ingest: Optional[Callable[[Request], Awaitable[Response]]] = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.fast_ingest is not None and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/" and not self.root_path):
            response = await self.fast_ingest(Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_detector_app(detector_cls: type[Detector], settings) -> FastAPI:
    metrics = ServiceMetrics(settings.monitor, settings.namespace)
    detector = detector_cls(settings, metrics)
    edge = _Edge(detector.name, metrics)
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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = asyncio.create_task(_load())
        yield
        loader.cancel()
        if state["ready"]:
            await detector.stop()

    app = _DetectorApp(title=f"vigil {detector.name} detector", lifespan=lifespan)
    app.state.detector = detector
    app.state.metrics = metrics
    app.state.edge = edge  # detector routers (the explainer's /explain) reject through it too

    @app.post("/")
    async def ingest(request: Request) -> Response:
        denied = edge.unauthorized(request)
        if denied is not None:
            return denied
        try:
            body = await read_limited(request, settings.max_body_bytes)
        except BodyTooLarge as exc:
            return edge.reject("too_large", str(exc), 413)
        if not state["ready"]:
            return edge.reject("not_ready", "detector is not ready yet (artifact loading)", 503)
        started = time.perf_counter()
        try:
            event = _parse(request.headers, body, settings, detector)
        except PayloadError as exc:
            return edge.reject(exc.reason, exc.message, exc.status)
        edge._received.get(event.kind, edge._received["other"]).inc()
        edge.counts["received"] += 1
        if event.kind not in detector.accepts:
            return Response(status_code=204)
        key = edge.seen.key(event.attributes)
        if key in edge.seen:  # a retry of an event already processed: never counted twice
            edge.duplicates.inc()
            edge.counts["duplicates"] += 1
            return Response(status_code=202)
        try:
            result: Optional[dict] = await detector.process(event)
        except PayloadError as exc:
            return edge.reject(exc.reason, exc.message, exc.status)
        except CheckpointError as exc:
            return edge.reject("checkpoint", f"event not kept: {exc}", 503)
        except Exception as exc:
            log.exception("%s detector failed on event %s", detector.name, event.id)
            return edge.reject("internal", f"{type(exc).__name__}: {exc}", 500)
        edge.seen.add(key)
        edge.health.accepted()
        edge.duration.observe(time.perf_counter() - started)
        if result is None:
            return Response(status_code=202)
        return _reply(detector, settings, event, result)

    app.fast_ingest = ingest

    @app.get("/status")
    async def status() -> dict:
        out = {"component": detector.name, "ready": state["ready"], "monitor": settings.monitor,
               "namespace": settings.namespace, "events": dict(edge.counts), "recent": edge.health.snapshot()}
        if state["error"]:
            out["error"] = state["error"]
        if detector.checkpoint.error:
            out["ready"] = False
            out["error"] = detector.checkpoint.error
        if state["ready"]:
            out.update(detector.status())
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
