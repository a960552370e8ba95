"""The metrics detector: response + feedback events in, model quality metrics out.

A response event (the model's answer, n rows) and a feedback event (``{"truth": ...}``,
n truth values) with the same inference id are joined in a `JoinStore`, whichever comes
first; feedback that carries its own ``"response"`` (Seldon style) is scored at once. Every
joined instance updates the scorer, and the Prometheus metrics are refreshed from it.

Exported (all with `monitor`/`namespace`):

- counters: ``vigil_metrics_feedback_total`` (valid feedback events),
  ``vigil_metrics_matched_total`` (feedback events joined with their response),
  ``vigil_metrics_instances_total`` (instances scored), ``vigil_metrics_expired_total{kind}``
  (responses/feedback that left the store unmatched: TTL or capacity),
  ``vigil_metrics_evicted_total{kind}`` (the capacity part of those),
  ``vigil_metrics_duplicates_total`` (responses for an inference already scored, ignored),
  ``vigil_metrics_feedback_corrections_total`` (later feedback for a scored inference: its truth
  replaces the earlier one in every metric, in the recent window too while the instances are in it);
  classification: ``vigil_metrics_{true,false}_{positives,negatives}_total{class}`` (cumulative,
  one-vs-rest; counters never go down, so a correction shows in the gauges, not in them).
- gauges with ``window="cumulative"|"recent"`` (recent = the last `window` joined instances):
  ``vigil_metrics_accuracy``, ``vigil_metrics_precision{class}``, ``vigil_metrics_recall{class}``,
  ``vigil_metrics_f1{class}``; regression ``vigil_metrics_mae``, ``_mse``, ``_rmse``, ``_r2``.
  Plus ``vigil_metrics_pending{kind}`` and ``vigil_metrics_window_instances`` (window fill).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Optional, Union

import numpy as np

from vigil.events import PayloadError
from vigil.telemetry import ServiceMetrics
from vigil_detectors.frame import Detector, InferenceEvent
from vigil_detectors.metrics.join import KINDS, JoinStore
from vigil_detectors.metrics.scoring import ClassificationScorer, RegressionScorer
from vigil_detectors.metrics.settings import MetricsSettings

WINDOWS = ("cumulative", "recent")
Scorer = Union[ClassificationScorer, RegressionScorer]
_COUNTS = {"tp": "true_positives", "fp": "false_positives", "tn": "true_negatives", "fn": "false_negatives"}


class MetricsDetector(Detector[MetricsSettings]):
    name = "metrics"
    accepts = frozenset({"response", "feedback"})

    def __init__(self, settings: MetricsSettings, metrics: ServiceMetrics):
        super().__init__(settings, metrics)
        m = metrics
        self.m_feedback = m.counter("vigil_metrics_feedback_total", "Valid feedback (ground truth) events received.")
        self.m_matched = m.counter("vigil_metrics_matched_total",
                                   "Feedback events joined with their response (or carrying it) and scored.")
        self.m_instances = m.counter("vigil_metrics_instances_total", "Instances (rows) scored against truth.")
        self.m_expired = m.counter("vigil_metrics_expired_total",
                                   "Responses or feedback that left the join store unmatched (TTL or capacity).",
                                   ["kind"])
        self.m_evicted = m.counter("vigil_metrics_evicted_total",
                                   "The part of expired_total evicted because the store was full.", ["kind"])
        self.m_duplicates = m.counter("vigil_metrics_duplicates_total",
                                      "Events for an inference id already scored (e.g. retried), ignored.")
        self.m_corrections = m.counter("vigil_metrics_feedback_corrections_total",
                                       "Feedback for an inference already scored that replaced its earlier truth.")
        self.m_pending = m.gauge("vigil_metrics_pending", "Entries waiting in the join store.", ["kind"])
        self.m_window = m.gauge("vigil_metrics_window_instances", "Joined instances in the recent window.")
        self.counts: dict[str, Any] = {"feedback": 0, "matched": 0, "instances": 0, "duplicates": 0, "corrections": 0,
                                       "expired": {k: 0 for k in KINDS}, "evicted": {k: 0 for k in KINDS}}
        for kind in KINDS:
            self.m_expired.labels(kind=kind)
            self.m_evicted.labels(kind=kind)
        self.classification = settings.task == "classification"
        if self.classification:
            self.m_counts = {k: m.counter(f"vigil_metrics_{name}_total",
                                          f"Instances counted as {name.replace('_', ' ')} (one-vs-rest), per class.",
                                          ["class"]) for k, name in _COUNTS.items()}
            self.m_accuracy = m.gauge("vigil_metrics_accuracy", "Share of instances predicted correctly.", ["window"])
            self.m_class = {k: m.gauge(f"vigil_metrics_{k}", f"{k.capitalize()} per class (one-vs-rest).",
                                       ["class", "window"]) for k in ("precision", "recall", "f1")}
            self._exported = {k: np.zeros(0, dtype=np.int64) for k in _COUNTS}
        else:
            self.m_reg = {k: m.gauge(f"vigil_metrics_{k}", doc, ["window"]) for k, doc in (
                ("mae", "Mean absolute error."), ("mse", "Mean squared error."),
                ("rmse", "Root mean squared error."), ("r2", "Coefficient of determination R²."))}
        self.scorer: Optional[Scorer] = None  # made in load(), like the store
        self.store: Optional[JoinStore] = None
        # inference ids already scored -> (when, truth, prediction, first sequence number in the scorer)
        self._done: OrderedDict[str, tuple[float, np.ndarray, np.ndarray, int]] = OrderedDict()
        self._sweeper: Optional[asyncio.Task] = None

    # -- frame contract -------------------------------------------------------------------
    def load(self) -> None:
        s = self.settings
        if self.classification:
            self.scorer = ClassificationScorer(s.classes, s.window, s.max_classes)
        else:
            self.scorer = RegressionScorer(s.window)
        self.store = JoinStore(s.feedback_ttl_seconds, s.max_pending, on_expire=self._on_expire)
        self._refresh()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()

    async def process(self, event: InferenceEvent) -> Optional[dict]:
        assert self.scorer is not None and self.store is not None  # loaded: the frame sends events only then
        key = event.inference_id or event.id
        if event.kind == "response":
            pred = event.outputs  # decoded by `decode_outputs` below, at the frame's edge
            assert pred is not None
            if self._is_done(key):
                return None
            truth = self.store.put("response", key, pred)
            if truth is not None:
                self._score(key, truth, pred)
        else:
            data = event.data
            if "truth" not in data:
                raise PayloadError("bad_body", "feedback needs 'truth' (the true label(s) or value(s))")
            truth = self.scorer.decode(data["truth"], "truth")
            pred = self.scorer.decode(data["response"], "feedback response") if data.get("response") is not None \
                else None
            if key in self._done:  # later feedback for a scored inference corrects it
                self._correct(key, truth)
                self._refresh_pending()
                return None
            self.m_feedback.inc()
            self.counts["feedback"] += 1
            if pred is not None:  # Seldon style: the feedback carries the response, no join needed
                self.store.discard("response", key)
                self._score(key, truth, pred)
            else:
                pred = self.store.put("feedback", key, truth)
                if pred is not None:
                    self._score(key, truth, pred)
        self._refresh_pending()
        return None

    def decode_outputs(self, data: Any) -> np.ndarray:
        """Response bodies carry class labels (numbers or V2 BYTES names), scores or values."""
        assert self.scorer is not None  # loaded: the frame decodes events only then
        return self.scorer.decode(data, "response", booleans=True)  # the model's own answer: true/false are 1/0

    def status(self) -> dict[str, Any]:
        scorer, store = self.scorer, self.store
        assert scorer is not None and store is not None  # loaded: the frame asks for status only then
        c = self.counts
        out: dict[str, Any] = {
            "task": self.settings.task, "feedback": c["feedback"], "matched": c["matched"],
            "instances": c["instances"], "pending": len(store),
            "pendingResponses": store.pending("response"), "pendingFeedback": store.pending("feedback"),
            "expired": sum(c["expired"].values()), "expiredResponses": c["expired"]["response"],
            "expiredFeedback": c["expired"]["feedback"], "evicted": sum(c["evicted"].values()),
            "duplicates": c["duplicates"], "corrections": c["corrections"],
            "window": {"size": self.settings.window, "instances": scorer.window_fill},
        }
        if isinstance(scorer, ClassificationScorer):  # the classification task's scorer
            recent, total = scorer.recent(), scorer.cumulative()
            out.update(accuracy=recent.accuracy, accuracyWindow="recent", accuracyCumulative=total.accuracy,
                       classes={name: {"precision": float(recent.precision[i]), "recall": float(recent.recall[i]),
                                       "f1": float(recent.f1[i])} for i, name in enumerate(scorer.names)})
        else:
            r = scorer.recent().as_dict()
            out.update({k: r[k] for k in ("mae", "mse", "rmse", "r2")}, metricsWindow="recent",
                       cumulative={k: v for k, v in scorer.cumulative().as_dict().items() if k != "n"})
        return {"metrics": out}

    # -- internals ------------------------------------------------------------------------
    def _is_done(self, key: str) -> bool:
        if key in self._done:
            self.m_duplicates.inc()
            self.counts["duplicates"] += 1
            return True
        return False

    def _score(self, key: str, truth: np.ndarray, pred: np.ndarray) -> None:
        assert self.scorer is not None  # loaded
        start = self.scorer.seq
        n = self.scorer.update(truth, pred)
        self._mark_done(key, truth, pred, start)
        self.m_matched.inc()
        self.m_instances.inc(n)
        self.counts["matched"] += 1
        self.counts["instances"] += n
        self._refresh()

    def _correct(self, key: str, truth: np.ndarray) -> None:
        assert self.scorer is not None  # loaded
        _, old, pred, start = self._done[key]
        self.scorer.correct(start, old, truth, pred)
        self._done[key] = (self._done[key][0], truth, pred, start)
        self.m_corrections.inc()
        self.counts["corrections"] += 1
        self._refresh()

    def _mark_done(self, key: str, truth: np.ndarray, pred: np.ndarray, start: int) -> None:
        now = time.monotonic()
        self._done[key] = (now, truth, pred, start)
        self._done.move_to_end(key)
        cutoff = now - self.settings.feedback_ttl_seconds
        while self._done and (len(self._done) > self.settings.max_pending or next(iter(self._done.values()))[0] < cutoff):
            self._done.popitem(last=False)

    def _on_expire(self, kind: str, reason: str) -> None:
        self.m_expired.labels(kind=kind).inc()
        self.counts["expired"][kind] += 1
        if reason == "capacity":
            self.m_evicted.labels(kind=kind).inc()
            self.counts["evicted"][kind] += 1

    def _refresh_pending(self) -> None:
        assert self.store is not None  # made in load(), before the first refresh
        for kind in KINDS:
            self.m_pending.labels(kind=kind).set(self.store.pending(kind))

    def _refresh(self) -> None:
        """Set every gauge from the scorer and advance the per-class counters."""
        scorer = self.scorer
        assert scorer is not None  # made in load(), before the first refresh
        self._refresh_pending()
        self.m_window.set(scorer.window_fill)
        if not isinstance(scorer, ClassificationScorer):  # regression
            for window, reg in zip(WINDOWS, (scorer.cumulative(), scorer.recent()), strict=True):
                for k in ("mae", "mse", "rmse", "r2"):
                    value = getattr(reg, k)
                    if value is not None:
                        self.m_reg[k].labels(window=window).set(value)
            return
        total = scorer.cumulative()
        names = scorer.names
        for k in _COUNTS:
            now = getattr(total, k)
            before = self._exported[k]
            if len(before) < len(now):
                before = np.concatenate([before, np.zeros(len(now) - len(before), dtype=np.int64)])
            for i in np.flatnonzero(now > before).tolist():  # a correction may lower a count: counters stay
                self.m_counts[k].labels(**{"class": names[i]}).inc(int(now[i] - before[i]))
            for i in range(len(self._exported[k]), len(now)):
                self.m_counts[k].labels(**{"class": names[i]})  # a new class shows up at 0 for every count
            self._exported[k] = np.maximum(now, before[:len(now)])
        for window, scores in zip(WINDOWS, (total, scorer.recent()), strict=True):
            if scores.accuracy is not None:
                self.m_accuracy.labels(window=window).set(scores.accuracy)
                for k in ("precision", "recall", "f1"):
                    values = getattr(scores, k)
                    for i, name in enumerate(names):
                        self.m_class[k].labels(**{"class": name, "window": window}).set(float(values[i]))

    async def _sweep(self) -> None:
        """Expire old entries even when no events arrive (so expiry is counted on time)."""
        assert self.store is not None  # made in load(), which the frame runs before start()
        interval = min(max(self.settings.feedback_ttl_seconds / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            if self.store.expire():
                self._refresh_pending()
