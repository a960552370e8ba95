"""The model server's HTTP API: Open Inference Protocol V2, the V1 ``instances`` body,
health, metadata, ``/status`` and ``/metrics``. The edge (limits, checks, the JSON error
answer) is `vigil.edge`.

The model is loaded once in the lifespan (a load failure stops the process with the
reason, so `vigil up` and Kubernetes both see it). Each request is decoded with
`vigil.instances.decode_table` against the monitor's schema (rows keyed by feature name,
category strings mapped to their codes; a missing value or an unseen category reaches the
model as NaN — a model that refuses NaN answers 422 ``predict_failed`` with its own message),
or with a tensor schema (``shape``, or the instance shape a Keras image model declares) by
`vigil.events.decode_instances` into a batch (n, *shape) whose every other instance shape is
a 400 naming both; and scored with one vectorised call; big batches run in a worker thread so
health checks keep answering. Bad input gets a 4xx ``{"error": ...}`` and is counted in
``vigil_events_rejected_total{reason}``.

V2 responses carry the output tensor ``predict`` (INT64 class labels for classifiers,
FP64 values for regressors) and, when the model has class scores, ``predict_proba``
(FP64, rows x classes). A V2 request may ask for a subset with ``"outputs": [{"name": ...}]``.
V1 responses are ``{"predictions": [...]}`` (labels or values).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

import vigil
from vigil.edge import Edge
from vigil.errors import InvalidInput, NotFound, NotReady, Rejected, Unprocessable
from vigil.events import PayloadError, decode_instances
from vigil.instances import InputSchema, decode_table
from vigil.modelserver.loaders import LoadedModel, ModelLoadError, load_model, predict_datatype
from vigil.modelserver.settings import ModelServerSettings
from vigil.telemetry import ServiceMetrics

log = logging.getLogger("vigil.model")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTPUT_NAMES = ("predict", "predict_proba")
_JSON = "application/json"
_NUMBERS = InputSchema(None, {})  # positional rows, no names or categories
REJECT_REASONS = ("too_large", "content_type", "content_encoding", "duplicate_header", "headers_too_large",
                  "bad_json", "too_deep", "empty_body", "bad_body", "bad_shape", "non_numeric", "out_of_range",
                  "feature_count", "bad_category", "unknown_model", "unknown_output", "predict_failed", "not_ready", "not_found",
                  "method_not_allowed", "internal")


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status_code=status, media_type=_JSON)


def _tensor(name: str, values: np.ndarray, datatype: str) -> dict:
    data = [str(v) for v in values.ravel()] if datatype == "BYTES" else values.ravel().tolist()
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}


def create_app(settings: Optional[ModelServerSettings] = None) -> FastAPI:
    settings = settings or ModelServerSettings()
    metrics = ServiceMetrics(settings.monitor, settings.namespace)
    m_duration = metrics.histogram("vigil_model_request_duration_seconds",
                                   "Time to answer an inference request (decode, predict, encode)",
                                   buckets=LATENCY_BUCKETS)
    m_requests = metrics.counter("vigil_model_requests_total", "Inference requests by protocol and status code",
                                 ("protocol", "code"))
    m_instances = metrics.counter("vigil_model_instances_total", "Rows scored by the model")
    edge = Edge(metrics, "model", kinds=("request",), reasons=REJECT_REASONS)
    schema = InputSchema.from_settings(settings.feature_names, settings.categorical)
    state: dict[str, Any] = {"model": None, "instances": 0, "shape": None}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        m = await run_in_threadpool(load_model, settings.uri, settings.format, settings.task)
        declared = tuple(settings.shape) if settings.shape else None
        if declared and m.input_shape and declared != m.input_shape:
            raise ModelLoadError(f"the schema's instance shape is {list(declared)} but the model at {settings.uri} "
                                 f"takes instances of shape {list(m.input_shape)}")
        state["model"] = m
        state["shape"] = declared or m.input_shape
        yield
        state["model"] = None

    app = FastAPI(title="Vigil model server", version=vigil.__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.metrics = metrics

    edge.install(app)

    def model() -> LoadedModel:
        m = state["model"]
        if m is None:
            raise NotReady("not_ready", "model is not loaded")
        return m

    def check_name(name: str) -> LoadedModel:
        if name != settings.name:
            raise NotFound("unknown_model", f"model {name!r} not found; this server serves {settings.name!r}")
        return model()

    def output_specs(m: LoadedModel) -> list[dict]:
        labels = "FP64" if not m.classifier else "INT64"
        outs = [{"name": "predict", "datatype": labels, "shape": [-1]}]
        if m.has_proba:
            outs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, m.n_classes or -1]})
        return outs

    async def score(request: Request, name: str,
                    protocol: str) -> tuple[Any, np.ndarray, Optional[np.ndarray], LoadedModel]:
        m = check_name(name)
        body = await edge.read_json(request)
        edge.count_received("request")
        if protocol == "v1" and not (isinstance(body, dict) and "instances" in body):
            raise PayloadError("bad_body", "V1 body must be {\"instances\": [...]}")
        shape = state["shape"]
        if shape:
            rows = decode_instances(body, None, shape=shape)
            if m.format != "tensorflow":  # scikit-learn / XGBoost take each tensor flattened
                rows = rows.reshape(len(rows), -1)
        else:  # the monitor's schema, unless the model is of another width (vigil validate says so): numbers
            fits = schema.n_features is None or m.n_features in (None, schema.n_features)
            rows = decode_table(body, schema if fits else _NUMBERS).rows
            if m.n_features is not None and rows.shape[1] != m.n_features:
                raise PayloadError("feature_count", f"expected {m.n_features} features per row, got {rows.shape[1]}")
        wanted = _requested_outputs(body) if protocol == "v2" else None
        want_proba = m.has_proba and (wanted is None or "predict_proba" in wanted)
        try:
            if rows.shape[0] > settings.thread_rows:
                labels, proba = await run_in_threadpool(m.predict, rows, want_proba)
            else:
                labels, proba = m.predict(rows, want_proba)
        except (ValueError, TypeError) as e:
            raise Unprocessable("predict_failed", f"the model could not score the input: {e}") from None
        m_instances.inc(rows.shape[0])
        state["instances"] += rows.shape[0]
        return body, labels, proba, m

    async def timed(request: Request, name: str, protocol: str, build) -> Response:
        start = time.perf_counter()
        code = 500
        try:
            response = build(*(await score(request, name, protocol)))
            code = response.status_code
            edge.accepted()
            return response
        except Rejected as e:
            code = e.status
            raise
        finally:
            m_requests.labels(protocol=protocol, code=str(code)).inc()
            if code < 400:
                m_duration.observe(time.perf_counter() - start)

    # -- V2 (Open Inference Protocol) ------------------------------------------------------------

    def v2_response(body: Any, labels: np.ndarray, proba: Optional[np.ndarray], m: LoadedModel) -> Response:
        outputs = [_tensor("predict", labels, predict_datatype(labels, m.classifier))]
        if proba is not None:
            outputs.append(_tensor("predict_proba", proba, "FP64"))
        wanted = _requested_outputs(body)
        if wanted is not None:
            outputs = [o for o in outputs if o["name"] in wanted]
        doc: dict[str, Any] = {"model_name": settings.name, "outputs": outputs}
        if isinstance(body, dict) and body.get("id") is not None:
            doc["id"] = body["id"]
        return _json(doc)

    async def v2_infer(request: Request, name: str, version: Optional[str] = None):
        return await timed(request, name, "v2", v2_response)

    app.add_api_route("/v2/models/{name}/infer", v2_infer, methods=["POST"])
    app.add_api_route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"])

    @app.get("/v2")
    async def server_metadata():
        return {"name": "vigil-modelserver", "version": vigil.__version__, "extensions": []}

    @app.get("/v2/health/live")
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def v2_ready():
        ready = state["model"] is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def model_metadata(name: str, version: Optional[str] = None):
        m = check_name(name)
        return {"name": settings.name, "versions": [], "platform": m.platform,
                "inputs": [{"name": "input-0", "datatype": "FP64",
                            "shape": [-1, *state["shape"]] if state["shape"] else [-1, m.n_features or -1]}],
                "outputs": output_specs(m), "parameters": {"task": m.task, "format": m.format}}

    app.add_api_route("/v2/models/{name}", model_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"])

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(name: str):
        check_name(name)
        return {"name": settings.name, "ready": True}

    # -- V1 (TF-Serving style body) --------------------------------------------------------------

    def v1_response(body: Any, labels: np.ndarray, proba: Optional[np.ndarray], m: LoadedModel) -> Response:
        if predict_datatype(labels, m.classifier) == "BYTES":
            return _json({"predictions": [str(v) for v in labels.ravel()]})
        if m.classifier and labels.dtype.kind == "f":
            labels = labels.astype(np.int64)
        return _json({"predictions": labels.tolist()})

    @app.post("/v1/models/{name}:predict")
    async def v1_predict(request: Request, name: str):
        return await timed(request, name, "v1", v1_response)

    @app.get("/v1/models/{name}")
    async def v1_model(name: str):
        check_name(name)
        return {"name": settings.name, "ready": True}

    # -- operations ------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        ready = state["model"] is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/status")
    async def status():
        m = state["model"]
        return {"component": "model", "ready": m is not None,
                "events": dict(edge.counts), "recent": edge.health.snapshot(),
                "model": {"name": settings.name, "format": settings.format, "instances": state["instances"],
                          **({"platform": m.platform, "task": m.task, "features": m.n_features} if m else {}),
                          **({"shape": list(state["shape"])} if state["shape"] else {})}}

    @app.get("/metrics")
    async def metrics_endpoint():
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    return app


def _requested_outputs(body: Any) -> Optional[set[str]]:
    """Output names a V2 request asks for (None = all); unknown names are a 400."""
    if not isinstance(body, dict) or not body.get("outputs"):
        return None
    outs = body["outputs"]
    if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
        raise InvalidInput("bad_body", "'outputs' must be a list of {\"name\": ...} objects")
    names = {o["name"] for o in outs}
    unknown = sorted(names - set(OUTPUT_NAMES))
    if unknown:
        raise InvalidInput("unknown_output", f"unknown output(s) {unknown}; this model has {list(OUTPUT_NAMES)}")
    return names
