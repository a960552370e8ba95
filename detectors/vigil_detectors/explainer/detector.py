"""The explainer detector: anchor explanations on demand (`POST /explain`) and, optionally,
for a sampled share of the request events the logger sends.

An explanation takes from a tenth of a second to seconds (alibi calls the model server
tens of times with ~100 perturbed rows each), so it runs in a worker thread, never on the
event loop. alibi's `AnchorTabular` keeps per-explanation state on the object, so each
concurrent explanation uses its own loaded copy from a small pool (`max_concurrent`);
`/explain` callers beyond that wait (at most `max_waiting` of them, then 503), and sampled
background explanations only start when a copy is free (else they are skipped and counted).

``POST /explain`` takes exactly one instance as a V2 (``inputs``) or V1 (``instances``) body
and answers ``{"anchor": [...], "precision": p, "coverage": c, "prediction": label, ...}``.
With ``type: anchor-image`` (alibi `AnchorImage`, DESIGN §8) the instance is one image of the
schema's shape and the answer is ``{"anchor": [segment ids], "segments": H×W integer mask,
"precision", "coverage", "prediction", "segmentCount", ...}`` (`imageplot.save_anchor_png`
draws it).

Bounded time (``timeout_seconds``, ``spec.detectors.explainer.timeout``): each explanation
has a deadline; its model calls are cut to the time left and the first one past it raises,
which ends alibi's search. ``POST /explain`` then answers **504** ``{"error": ..., "reason":
"timeout"}`` — no partial anchor (alibi's beam search has no sound anchor before it meets the
precision threshold or runs out of candidates). The HTTP answer never waits more than the
timeout plus a short grace even if the worker is between model calls; its explainer copy
is reused once that thread ends. Counted in ``vigil_explainer_failures_total{reason="timeout"}``.

Metrics: ``vigil_explainer_explanations_total{source}`` (api | sampled),
``vigil_explainer_duration_seconds`` (histogram), ``vigil_explainer_precision`` and
``vigil_explainer_coverage`` (of the latest explanation), ``vigil_explainer_anchor_features_total{feature}``
(how often each feature is part of an anchor), ``vigil_explainer_failures_total{reason}``,
``vigil_explainer_skipped_total{reason}``, ``vigil_explainer_model_calls_total`` and
``vigil_explainer_model_rows_total``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from vigil.errors import NotReady, Rejected, UpstreamError, UpstreamTimeout
from vigil.events import PayloadError, decode_instances
from vigil.instances import InputSchema, decode_table
from vigil.telemetry import ServiceMetrics
from vigil_detectors.explainer.predictor import ExplanationTimeout, ModelCallError, ModelServerPredictor
from vigil_detectors.explainer.settings import ExplainerSettings
from vigil_detectors.frame import Detector, DetectorError, InferenceEvent
from vigil_detectors.frame.settings import category_counts

log = logging.getLogger("vigil.explainer")

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: How long past ``timeout`` an answer may wait for a worker thread between two model calls (segmentation,
#: coverage sampling) before /explain answers 504 anyway; the thread then ends at its next model call.
_GRACE_SECONDS = 2.0
#: alibi's explainer class for each ``type``.
_CLASSES = {"anchor-tabular": "AnchorTabular", "anchor-image": "AnchorImage"}


def _scalar(value: Any) -> Any:
    """A numpy label as a JSON value (int for whole numbers, else float or str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class ExplainerDetector(Detector[ExplainerSettings]):
    name = "explainer"
    accepts = frozenset({"request"})
    ordered = True  # JetStream: one slow explanation after another, each heartbeating (a work queue)

    def __init__(self, settings: ExplainerSettings, metrics: ServiceMetrics):
        super().__init__(settings, metrics)
        m = metrics
        self.m_explanations = m.counter("vigil_explainer_explanations_total", "Anchor explanations computed.",
                                        ["source"])
        self.m_duration = m.histogram("vigil_explainer_duration_seconds", "Time to compute one explanation.",
                                      buckets=_DURATION_BUCKETS)
        self.m_precision = m.gauge("vigil_explainer_precision", "Precision of the latest anchor.")
        self.m_coverage = m.gauge("vigil_explainer_coverage", "Coverage of the latest anchor.")
        self.m_features = m.counter("vigil_explainer_anchor_features_total",
                                    "Times each feature was part of an anchor.", ["feature"])
        self.m_failures = m.counter("vigil_explainer_failures_total", "Explanations that failed.", ["reason"])
        self.m_skipped = m.counter("vigil_explainer_skipped_total",
                                   "Sampled rows not explained (all explainer copies busy).", ["reason"])
        self.m_calls = m.counter("vigil_explainer_model_calls_total", "V2 calls made to the model server.")
        self.m_rows = m.counter("vigil_explainer_model_rows_total", "Rows sent to the model server.")
        for source in ("api", "sampled"):
            self.m_explanations.labels(source=source)
        self.predictor: Optional[ModelServerPredictor] = None
        self._path: Optional[Path] = None
        self._pool: list = []
        self._slots: Optional[asyncio.Semaphore] = None
        self._waiting = 0
        self._background: set[asyncio.Task] = set()
        self._rng = random.Random(settings.seed)
        self.feature_names: list[str] = list(settings.feature_names or [])
        self.image_shape: Optional[tuple[int, ...]] = None  # anchor-image: the shape of one image
        self.categories: dict[int, int] = {}
        self.state: dict[str, Any] = {"explanations": 0, "failures": 0, "skipped": 0, "lastAnchor": None,
                                      "precision": None, "coverage": None, "prediction": None,
                                      "lastDurationSeconds": None}

    # -- loading ----------------------------------------------------------------------------
    # The frame runs `load` in a worker thread, then awaits `start`, and only then turns ready.
    # alibi calls the predictor once while it loads an explainer, so the model server must
    # answer first; that wait happens in `start`, on the event loop, where shutdown can cancel
    # it (a worker thread blocked on it would hold the process up at exit).
    def load(self) -> None:
        s = self.settings
        if not s.artifact:
            raise DetectorError("no explainer artifact configured (VIGIL_EXPLAINER_ARTIFACT); train one with vigil train")
        self._path = Path(s.artifact)
        if not (self._path / "meta.dill").is_file():
            raise DetectorError(f"{self._path} is not an explainer saved by alibi (no meta.dill); "
                                "train one with vigil train")
        self.predictor = ModelServerPredictor(s.model_url, s.model_name, max_rows=s.batch_size,
                                              timeout=s.model_timeout_seconds, on_call=self._on_call,
                                              schema=InputSchema.from_settings(s.feature_names, s.categorical))
        # The model is a black box behind HTTP: alibi's TensorFlow/PyTorch explainers are never
        # used here, so alibi is imported with their frameworks kept out (vigil.imports) — for
        # this import only, so nothing else in the process loses TensorFlow.
        from vigil.imports import keep_out

        with keep_out():
            import alibi.saving  # noqa: F401 - the slow import, off the event loop

    async def start(self) -> None:
        await self._wait_for_model()
        self._pool = await asyncio.to_thread(self._load_copies)
        self._slots = asyncio.Semaphore(len(self._pool))

    async def _wait_for_model(self) -> None:
        s = self.settings
        predictor = self.predictor
        assert predictor is not None  # made in load(), which the frame runs before start()
        url = f"{predictor.base_url}/v2/health/ready"
        deadline = None if s.model_wait_seconds is None else time.monotonic() + s.model_wait_seconds
        next_log = time.monotonic() + 10
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    r = await client.get(url)
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if deadline is not None and time.monotonic() >= deadline:
                    raise DetectorError(f"model server {predictor.base_url} not ready after "
                                        f"{s.model_wait_seconds:.0f} s ({last})")
                if time.monotonic() >= next_log:
                    log.info("waiting for the model server %s to be ready (%s)", url, last)
                    next_log = time.monotonic() + 30
                await asyncio.sleep(0.25)

    def _load_copies(self) -> list:
        from alibi.saving import load_explainer

        from vigil.imports import keep_out

        s = self.settings
        with keep_out():  # loading may import more of alibi: still without TensorFlow
            pool = [load_explainer(str(self._path), self.predictor) for _ in range(s.max_concurrent)]
        first = pool[0]
        want = _CLASSES[s.type]
        if type(first).__name__ != want:
            raise DetectorError(f"the explainer at {self._path} is an alibi {type(first).__name__}; type {s.type} "
                                f"needs an {want} (train it with vigil train)")
        if s.type == "anchor-image":
            self.image_shape = tuple(int(d) for d in first.image_shape)
            if s.shape and tuple(s.shape) != self.image_shape:
                raise DetectorError(f"the explainer was fitted on images of shape {list(self.image_shape)}, the "
                                    f"monitor's schema says {list(s.shape)}")
            log.info("explainer loaded from %s: AnchorImage on %s images, %d copies", self._path,
                     list(self.image_shape), len(pool))
            return pool
        names = list(first.feature_names)
        if self.feature_names and self.feature_names != names:
            raise DetectorError(f"the explainer was trained on features {names}, the monitor names {self.feature_names}")
        self.feature_names = names
        self.categories = {int(i): len(first.feature_values[i]) for i in first.categorical_features}
        for key, n in category_counts(s.categorical).items():
            if int(key) not in self.categories or (n is not None and self.categories[int(key)] != n):
                log.warning("schema says feature %s has %s categories; the explainer artifact says %s",
                            key, n, self.categories.get(int(key)))
        log.info("explainer loaded from %s: %d features (%d categorical), %d copies", self._path, len(names),
                 len(self.categories), len(pool))
        return pool

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.predictor:
            await asyncio.to_thread(self.predictor.close)

    def _on_call(self, rows: int) -> None:
        self.m_calls.inc()
        self.m_rows.inc(rows)

    # -- explaining ---------------------------------------------------------------------------
    def _decode(self, doc: Any) -> np.ndarray:
        """One ``POST /explain`` body as rows: named features and category strings as at every edge;
        anchors need every value, so a missing one or an unseen category is a 400 here."""
        schema = InputSchema.from_settings(self.feature_names, self.settings.categorical)
        decoded = decode_table(doc, schema)
        for mask, reason, what in ((decoded.missing, "missing_value", "has no value"),
                                   (decoded.unseen, "bad_category", "holds a category outside the declared ones")):
            if mask.any():
                j = int(np.nonzero(mask.any(axis=0))[0][0])
                raise PayloadError(reason, f"feature {self.feature_names[j]!r} {what}; an explanation needs "
                                           "every feature's value")
        return decoded.rows

    def _check_instance(self, rows: np.ndarray) -> np.ndarray:
        if rows.shape[0] != 1:
            raise PayloadError("instance_count", f"send exactly one instance to explain, got {rows.shape[0]}")
        if self.image_shape is not None:
            image = rows[0]
            if image.shape != self.image_shape:
                if image.size != int(np.prod(self.image_shape)) or image.ndim != 1:
                    raise PayloadError("bad_shape", f"expected an image of shape {list(self.image_shape)}, "
                                                    f"got {list(image.shape)}")
                image = image.reshape(self.image_shape)  # one flat row of a tensor schema: the same pixels
            return image
        row = rows[0]
        for idx, n in self.categories.items():
            v = row[idx]
            if v != round(v) or not 0 <= v < n:
                raise PayloadError("bad_category", f"feature {self.feature_names[idx]!r} is categorical: "
                                                   f"send a category code 0..{n - 1}, got {v}")
        return row

    def _explain_sync(self, explainer, row: np.ndarray) -> dict[str, Any]:
        s = self.settings
        assert self.predictor is not None  # loaded
        self.predictor.reset_thread_counts()
        self.predictor.set_deadline(s.timeout_seconds)
        started = time.perf_counter()
        try:
            if self.image_shape is not None:
                exp = explainer.explain(row, threshold=s.threshold, p_sample=s.p_sample, batch_size=s.anchor_batch_size,
                                        coverage_samples=s.coverage_samples)
            else:
                exp = explainer.explain(row, threshold=s.threshold, batch_size=s.anchor_batch_size,
                                        coverage_samples=s.coverage_samples)
        finally:
            self.predictor.set_deadline(None)
        seconds = time.perf_counter() - started
        calls, rows = self.predictor.thread_counts()
        raw = exp.data["raw"]
        if self.image_shape is not None:
            return {
                "anchor": [int(i) for i in raw["feature"]], "segments": np.asarray(exp.segments, dtype=int).tolist(),
                "precision": float(exp.precision), "coverage": float(exp.coverage),
                "prediction": _scalar(np.asarray(raw["prediction"]).reshape(-1)[0]),
                "thresholdMet": bool(raw.get("success", exp.precision >= s.threshold)), "threshold": s.threshold,
                "segmentCount": int(np.unique(exp.segments).size), "durationSeconds": seconds,
                "modelCalls": calls, "modelRows": rows, "features": [],
            }
        return {
            "anchor": list(exp.anchor), "precision": float(exp.precision), "coverage": float(exp.coverage),
            "prediction": _scalar(np.asarray(raw["prediction"]).reshape(-1)[0]),
            "features": [self.feature_names[int(i)] for i in raw["feature"]],
            "thresholdMet": bool(raw.get("success", exp.precision >= s.threshold)), "threshold": s.threshold,
            "instance": [_scalar(v) for v in row.tolist()], "durationSeconds": seconds,
            "modelCalls": calls, "modelRows": rows,
        }

    async def explain(self, row: np.ndarray, source: str) -> dict[str, Any]:
        """Explain one instance (waits for a free explainer copy). Raises ModelCallError."""
        assert self._slots is not None  # started: callers check readiness first
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        explainer = self._pool.pop()
        slots = self._slots
        work = asyncio.ensure_future(asyncio.to_thread(self._explain_sync, explainer, row))

        def done(task: asyncio.Future) -> None:  # the copy is free again only once its thread has ended
            self._pool.append(explainer)
            slots.release()
            if not task.cancelled():
                task.exception()  # retrieved here when the caller stopped waiting (timeout)

        work.add_done_callback(done)
        timeout = self.settings.timeout_seconds
        try:
            result = await asyncio.wait_for(asyncio.shield(work), timeout + _GRACE_SECONDS)
        except asyncio.TimeoutError:
            raise ExplanationTimeout(f"the explanation took longer than the explainer timeout ({timeout:g} s)") from None
        self._record(result, source)
        return result

    def _record(self, result: dict[str, Any], source: str) -> None:
        self.m_explanations.labels(source=source).inc()
        self.m_duration.observe(result["durationSeconds"])
        self.m_precision.set(result["precision"])
        self.m_coverage.set(result["coverage"])
        for feature in result["features"]:  # anchor-image: segment ids are not features (no label)
            self.m_features.labels(feature=feature).inc()
        self.state.update(explanations=self.state["explanations"] + 1, lastAnchor=result["anchor"],
                          precision=result["precision"], coverage=result["coverage"],
                          prediction=result["prediction"], lastDurationSeconds=result["durationSeconds"])

    def _failed(self, reason: str) -> None:
        self.m_failures.labels(reason=reason).inc()
        self.state["failures"] += 1

    # -- sampled request events ---------------------------------------------------------------
    async def process(self, event: InferenceEvent) -> Optional[dict]:
        rate = self.settings.sample_rate
        if rate <= 0:
            return None
        # the frame sends events only once started, request events with decoded instances
        assert self._slots is not None and event.instances is not None
        for row in event.instances:
            if self._rng.random() >= rate:
                continue
            if self._slots.locked() or self._waiting:
                self.m_skipped.labels(reason="busy").inc()
                self.state["skipped"] += 1
                continue
            try:
                self._check_instance(row[None])
            except PayloadError as exc:
                self._failed(exc.reason)
                continue
            task = asyncio.create_task(self._background_explain(row.copy()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return None

    async def _background_explain(self, row: np.ndarray) -> None:
        try:
            await self.explain(row, "sampled")
        except ExplanationTimeout as exc:
            log.warning("sampled explanation abandoned: %s", exc)
            self._failed("timeout")
        except ModelCallError as exc:
            log.warning("sampled explanation failed: %s", exc)
            self._failed("model_error")
        except Exception:  # a bad row must not kill the service
            log.exception("sampled explanation failed")
            self._failed("internal")

    # -- /status and /explain -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        busy = self.settings.max_concurrent - len(self._pool) if self._slots is not None else 0
        return {"explainer": {**self.state, "threshold": self.settings.threshold,
                              "sampleRate": self.settings.sample_rate, "busy": busy, "waiting": self._waiting,
                              "modelCalls": self.predictor.calls if self.predictor else 0}}

    async def _explain_request(self, request: Request, edge) -> dict[str, Any]:
        s = self.settings
        edge.check_auth(request)
        if self._slots is None:
            raise NotReady("not_ready", "explainer is not ready yet (loading the artifact)")
        doc = await edge.read_json(request)
        if self.image_shape is not None:
            row = self._check_instance(decode_instances(doc, None, shape=self.image_shape))
        else:
            row = self._check_instance(self._decode(doc))
        if self._slots.locked() and self._waiting >= s.max_waiting:
            raise NotReady("busy", f"{s.max_concurrent} explanations running and {self._waiting} waiting; retry later")
        try:
            return await self.explain(row, "api")
        except ExplanationTimeout:
            self._failed("timeout")
            raise UpstreamTimeout("timeout", f"no explanation within the explainer timeout ({s.timeout_seconds:g} s); "
                                             "raise explainer.timeout, lower threshold or use fewer segments") from None
        except ModelCallError as exc:
            self._failed("model_error")
            raise UpstreamError("model_error", str(exc)) from None
        except Exception as exc:
            log.exception("explanation failed")
            self._failed("internal")
            raise Rejected(500, "internal", f"explanation failed: {type(exc).__name__}: {exc}") from None

    def routers(self) -> list:
        router = APIRouter()

        @router.post("/explain")
        async def explain(request: Request) -> Response:
            edge = request.app.state.edge
            try:
                return JSONResponse(await self._explain_request(request, edge))
            except Rejected as exc:
                return edge.reject(exc)

        return [router]
