"""The request logger service: a reverse proxy for ``/v2/...`` and ``/v1/...`` that logs
each inference as CloudEvents, plus ``POST /feedback`` for ground truth.

Inference path (kept light: bodies are forwarded as bytes, never decoded):

1. the inference id is the client's ``ce-id``, else ``x-request-id``, else a new UUID4;
2. the request goes to ``upstream`` over one shared, pooled HTTP client session
   (aiohttp: it costs about a quarter of the CPU per call of httpx, and this path makes
   three client calls per inference: the upstream and, later, two sinks);
3. the upstream answer is returned unchanged, plus ``x-inference-id``;
4. for a 2xx answer to an infer/predict call, the request and response events are
   handed to the sinks that want them (`Sink.offer`, never waiting) according to
   ``mode`` and ``sample_rate`` (one draw per inference, so the pair stays together);
   with ``capture`` set, also to the capture writer (`vigil.capture.writer`, its own draw).
   With ``transport.type: jetstream`` the one sink is the monitor's stream
   (`vigil.transport.jetstream.JetStreamSink`) and the detectors consume it.

Requests that fail upstream (4xx/5xx) are returned as they are but not logged: detectors
only see inferences the model accepted. An upstream that does not answer gives 502
(504 on timeout) with ``{"error": ...}``.

Events carry the extension attributes ``inferenceid``, ``modelname`` (the setting, else
the name in the path), ``monitorname``, ``namespace`` and ``endpoint`` (the inference
path, e.g. ``/v2/models/iris/infer``, which also tells V1 from V2). Feedback is never
sampled away.

Readiness: ``/readyz`` is 200 when the upstream answers ``/v2/health/ready`` with 200
(or 404: a V1-only server that is up), checked at most once a second; with
``ready_requires_upstream=false`` it is 200 as soon as the proxy runs. ``/healthz`` is
always 200 while the process serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Optional

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response
from yarl import URL

import vigil
from vigil.auth import auth_header, token_from_env
from vigil.edge import Edge, is_json
from vigil.errors import InvalidInput, Rejected, error_body
from vigil.events import (
    ATTR_ENDPOINT,
    ATTR_INFERENCE_ID,
    ATTR_MODEL,
    ATTR_MONITOR,
    ATTR_NAMESPACE,
    KIND_TO_TYPE,
    SOURCE_PREFIX,
)
from vigil.logger.metrics import LoggerMetrics
from vigil.logger.settings import LoggerSettings
from vigil.logger.sinks import Event, QueuedSink, RetryPolicy, Sink
from vigil.logger.truth import check_truth

log = logging.getLogger(__name__)

_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/[^/]+)?/infer$"
                    r"|^/v1/models/(?P<v1name>[^/:]+)(?:/versions/[^/:]+)?:predict$")
# Not forwarded either way: hop-by-hop headers (RFC 9110 §7.6.1), and what aiohttp /
# uvicorn recompute for the bytes they actually send.
_SKIP_REQUEST = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"proxy-connection",
                           b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"})
_SKIP_RESPONSE = frozenset({b"content-length", b"content-encoding", b"connection", b"keep-alive",
                            b"transfer-encoding", b"trailer", b"upgrade", b"date", b"server", b"x-inference-id"})
_ID_OK = re.compile(r"^[\x21-\x7e]{1,128}$")
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
_JSON = "application/json"
_READY_CACHE_SECONDS = 1.0


def _json(doc: Any, status: int = 200, iid: Optional[str] = None) -> Response:
    r = Response(json.dumps(doc, separators=(",", ":")).encode(), status_code=status, media_type=_JSON)
    if iid:
        r.headers["x-inference-id"] = iid
    return r


def inference_id_from(headers) -> str:
    """The client's ce-id, else x-request-id, else a new UUID4 (ids that are not short printable ASCII are replaced)."""
    for key in ("ce-id", "x-request-id"):
        value = headers.get(key)
        if value and _ID_OK.match(value):
            return value
    return str(uuid.uuid4())


#: Upstream failures that mean a pooled connection died before the upstream sent anything
#: back (it closed an idle keep-alive connection, or reset it): worth one retry on a fresh
#: connection. A refused connect is not retried (a fresh one would be refused too).
_RETRY_ON_FRESH = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
#: Why the logger refuses a request (series exist from the start).
REJECT_REASONS = ("too_large", "content_type", "content_encoding", "duplicate_header", "headers_too_large",
                  "bad_json", "too_deep", "empty_body", "bad_body", "missing_truth", "bad_truth",
                  "missing_inference_id", "not_found", "method_not_allowed", "unauthorized")


def create_app(settings: Optional[LoggerSettings] = None) -> FastAPI:
    settings = settings or LoggerSettings()
    jetstream = settings.transport.jetstream and bool(settings.sinks)
    metrics = LoggerMetrics(settings.monitor, settings.namespace,
                            ["jetstream"] if jetstream else [s.name for s in settings.sinks])
    source = f"{SOURCE_PREFIX}/{settings.namespace}/{settings.monitor}/logger"
    upstream_url = settings.upstream.rstrip("/")
    st: dict[str, Any] = {"requests": 0, "sinks": [], "ready": (0.0, False),
                          "targets": {k: [] for k in KIND_TO_TYPE}, "enabled": {k: False for k in KIND_TO_TYPE}}
    m_requests: dict[int, Any] = {}  # code -> bound counter child (avoid label lookups per request)

    def count_request(code: int) -> None:
        child = m_requests.get(code)
        if child is None:
            child = m_requests[code] = metrics.requests.labels(code=str(code))
        child.inc()
        st["requests"] += 1
        if code < 400:
            edge.accepted()

    edge = Edge(metrics.service, "logger", kinds=KIND_TO_TYPE, reasons=REJECT_REASONS, on_reject=count_request)
    m_retries = metrics.upstream_retries.labels()
    m_added = metrics.added_latency.labels()
    m_upstream = metrics.upstream_duration.labels()
    capture = None
    if settings.capture is not None:
        from vigil.capture.writer import CaptureMetrics, CaptureWriter

        capture = CaptureWriter(settings.capture, CaptureMetrics(metrics.service), max_record_bytes=edge.max_body_bytes,
                                subdir=settings.pod_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        upstream = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_max_connections, keepalive_timeout=60.0),
            timeout=aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds,
                                          sock_connect=settings.upstream_connect_timeout_seconds),
            # forward exactly the client's headers, not the library's defaults
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            trust_env=False, auto_decompress=True)
        # One retry when a pooled connection turns out dead goes over a new connection.
        fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_max_connections, force_close=True),
            timeout=upstream.timeout, skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            trust_env=False, auto_decompress=True)
        n_workers = settings.sink_workers * max(1, len(settings.sinks))
        sink_client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=n_workers, keepalive_timeout=60.0),
            timeout=aiohttp.ClientTimeout(total=settings.sink_timeout_seconds), trust_env=False,
            headers=auth_header(token_from_env()))  # the shared token, when set, goes to every sink
        policy = RetryPolicy(settings.retries, settings.backoff_initial_seconds, settings.backoff_max_seconds)
        sinks: list[QueuedSink]
        if jetstream:  # one publisher; the sinks are the detectors' consumers on the stream
            from vigil.transport.jetstream import JetStreamSink, consumer_specs

            sinks = [JetStreamSink(settings.transport, consumer_specs(settings.sinks, settings.transport),
                                   settings.namespace, settings.monitor, policy, metrics, settings.queue_size,
                                   settings.sink_workers, queue_bytes=settings.queue_bytes,
                                   max_event_bytes=edge.max_body_bytes, timeout=settings.sink_timeout_seconds)]
        else:
            sinks = [Sink(cfg, sink_client, policy, metrics, settings.queue_size, settings.sink_workers,
                          queue_bytes=settings.queue_bytes, max_event_bytes=edge.max_body_bytes)
                     for cfg in settings.sinks]
        enabled = {"request": settings.mode in ("all", "request"), "response": settings.mode in ("all", "response"),
                   "feedback": True}
        st["targets"] = {k: [s for s in sinks if k in s.types] if enabled[k] else [] for k in KIND_TO_TYPE}
        st["enabled"] = enabled
        st["sinks"] = sinks
        st["upstream"] = upstream
        st["fresh"] = fresh
        for s in sinks:
            s.start()
        if capture is not None:
            capture.start()
        log.info("logger: upstream %s, mode %s, sample rate %s, sinks %s", upstream_url, settings.mode,
                 settings.sample_rate, ", ".join(f"{s.name}={s.url}{sorted(s.types)}" for s in sinks) or "none")
        try:
            yield
        finally:
            for s in sinks:
                await s.stop(settings.shutdown_grace_seconds)
            if capture is not None:
                await asyncio.to_thread(capture.stop, settings.shutdown_grace_seconds)
            await upstream.close()
            await fresh.close()
            await sink_client.close()

    app = FastAPI(title="Vigil request logger", version=vigil.__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sinks = lambda: st["sinks"]

    edge.install(app)

    def emit(kind: str, iid: str, model: str, endpoint: str, data: bytes, content_type: str, ts: float,
             send: bool = True, captured: bool = False) -> int:
        targets = st["targets"][kind] if send else []
        captured = captured and st["enabled"][kind]
        if not targets and not captured:
            return 0
        attributes = {
            "id": str(uuid.uuid4()), "source": source, "type": KIND_TO_TYPE[kind], "specversion": "1.0",
            "time": ts, "datacontenttype": content_type, ATTR_INFERENCE_ID: iid, ATTR_MODEL: model,
            ATTR_MONITOR: settings.monitor, ATTR_NAMESPACE: settings.namespace, ATTR_ENDPOINT: endpoint,
        }
        if captured and capture is not None:  # the same ce-id as the sinks got: a replay is de-duplicated
            capture.offer(kind, attributes, data)
        if not targets:
            return 0
        event = Event(kind, attributes, data)
        return sum(1 for sink in targets if sink.offer(event))

    # -- the inference path ----------------------------------------------------------------------

    async def proxy(request: Request) -> Response:
        start = time.perf_counter()
        headers = request.headers
        iid = inference_id_from(headers)
        scope = request.scope
        path = scope["path"]
        match = _INFER.match(path) if request.method == "POST" else None
        try:
            body = await edge.read(request)
        except Rejected as e:
            return edge.reject(e, {"x-inference-id": iid})
        if match:
            edge.count_received("request")
        fwd = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw if k not in _SKIP_REQUEST]
        if "x-request-id" not in headers:
            fwd.append(("x-request-id", iid))
        target = upstream_url + (scope.get("raw_path") or path.encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        url = URL(target, encoded=True)

        async def call(session: aiohttp.ClientSession):
            async with session.request(request.method, url, headers=fwd, data=body or None,
                                       allow_redirects=False) as answer:
                return await answer.read(), answer.status, answer.raw_headers, answer.headers.get("content-type")

        t_up = time.perf_counter()
        try:
            try:
                content, status, answer_headers, answer_ctype = await call(st["upstream"])
            except _RETRY_ON_FRESH as e:
                if isinstance(e, aiohttp.ClientConnectorError):
                    raise
                m_retries.inc()
                content, status, answer_headers, answer_ctype = await call(st["fresh"])
        except asyncio.TimeoutError as e:
            return upstream_failure(504, "timeout", f"upstream {upstream_url} timed out: {type(e).__name__}",
                                    iid, start, t_up)
        except aiohttp.ClientError as e:
            reason = "connect" if isinstance(e, aiohttp.ClientConnectorError) else "protocol"
            return upstream_failure(502, reason, f"upstream {upstream_url} unreachable: {type(e).__name__}: {e}",
                                    iid, start, t_up)
        upstream_seconds = time.perf_counter() - t_up
        m_upstream.observe(upstream_seconds)
        if match and 200 <= status < 300:
            edge.count_received("response")
            rate = settings.sample_rate
            send = rate >= 1.0 or (rate > 0.0 and random.random() < rate)
            captured = capture is not None and capture.sample()
            if send or captured:
                model = settings.model_name or match.group("name") or match.group("v1name")
                now = time.time()
                # the model accepted the body, so a curl-style form content type carried JSON
                ctype = headers.get("content-type")
                emit("request", iid, model, path, body, ctype if ctype and not is_json(ctype) else _JSON, now,
                     send, captured)
                emit("response", iid, model, path, content, answer_ctype or _JSON, now, send, captured)
        response = Response(content, status_code=status)
        raw = [(k.lower(), v) for k, v in answer_headers if k.lower() not in _SKIP_RESPONSE]
        if status >= 200 and status not in (204, 304):
            raw.append((b"content-length", str(len(content)).encode()))
        raw.append((b"x-inference-id", iid.encode()))
        response.raw_headers = raw
        count_request(status)
        m_added.observe(time.perf_counter() - start - upstream_seconds)
        return response

    def upstream_failure(status: int, reason: str, message: str, iid: str, start: float, t_up: float) -> Response:
        up = time.perf_counter() - t_up
        metrics.upstream_errors.labels(reason=reason).inc()
        count_request(status)
        m_added.observe(max(0.0, time.perf_counter() - start - up))
        return _json(error_body(message, reason), status, iid)

    app.add_route("/v2", proxy, methods=_METHODS)
    app.add_route("/v2/{rest:path}", proxy, methods=_METHODS)
    app.add_route("/v1/{rest:path}", proxy, methods=_METHODS)

    # -- feedback --------------------------------------------------------------------------------

    @app.post("/feedback", status_code=202)
    async def feedback(request: Request):
        try:
            edge.check_auth(request)  # /feedback only: the inference path stays open
            return accept_feedback(request, await edge.read_json(request, "feedback"))
        except Rejected as e:
            return edge.reject(e)

    def accept_feedback(request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise InvalidInput("bad_body", 'feedback must be a JSON object {"inferenceId": ..., "truth": ...}')
        if body.get("truth") is None:
            raise InvalidInput("missing_truth", "feedback needs 'truth' (the ground truth for the inference)")
        check_truth(body["truth"], settings.task, settings.classes)
        if body.get("response") is not None:
            check_truth(body["response"], settings.task, settings.classes, "feedback response")
        iid = body.get("inferenceId")
        if iid is None:
            h = request.headers
            iid = h.get("x-inference-id") or h.get("ce-id") or h.get("x-request-id")
        if not isinstance(iid, str) or not _ID_OK.match(iid):
            raise InvalidInput("missing_inference_id",
                               "feedback needs 'inferenceId' (or an x-inference-id header): the id the logger "
                               "returned in x-inference-id, 1-128 printable characters")
        data = {"truth": body["truth"]}
        if body.get("response") is not None:
            data["response"] = body["response"]
        edge.count_received("feedback")
        queued = emit("feedback", iid, settings.model_name or "", "/feedback",
                      json.dumps(data, separators=(",", ":")).encode(), _JSON, time.time(), captured=True)
        return _json({"inferenceId": iid, "accepted": True, "queued": queued}, 202, iid)

    # -- operations ------------------------------------------------------------------------------

    async def ready() -> bool:
        if not settings.ready_requires_upstream:
            return True
        checked, value = st["ready"]
        now = time.monotonic()
        if now - checked < _READY_CACHE_SECONDS:
            return value
        try:
            async with st["upstream"].get(upstream_url + "/v2/health/ready",
                                          timeout=aiohttp.ClientTimeout(total=1.0)) as r:
                value = r.status in (200, 404)
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError):
            value = False
        st["ready"] = (now, value)
        return value

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        ok = await ready()
        return _json({"ready": ok, "upstream": upstream_url}, 200 if ok else 503)

    @app.get("/status")
    async def status():
        sinks: list[QueuedSink] = st["sinks"]
        return {"component": "logger", "ready": await ready(),
                "events": dict(edge.counts), "recent": edge.health.snapshot(),
                "logger": {"requests": st["requests"], "eventsSent": sum(s.sent for s in sinks),
                           "eventsDropped": sum(sum(s.dropped.values()) for s in sinks),
                           "queueDepth": sum(s.depth for s in sinks), "upstream": upstream_url,
                           "mode": settings.mode, "sampleRate": settings.sample_rate,
                           "sinks": {s.name: s.summary() for s in sinks},
                           **({"capture": capture.summary()} if capture is not None else {})}}

    @app.get("/metrics")
    async def metrics_endpoint():
        for s in st["sinks"]:
            metrics.queue_depth.labels(sink=s.name).set(s.depth)
        if capture is not None:
            capture.metrics.queue_depth.set(capture.depth)
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    return app
