"""The outlier `Detector`: every request event's rows scored by the VAE, batched across callers.

Per event: the rows (already decoded to float64 and counted by the frame) are checked
against the artifact's feature count (or, for tensor instances, its instance shape: a 400
naming both shapes) and submitted to the `MicroBatcher`, which scores concurrent events in
one call. Once per batch, in the worker thread, the rows are prepared for the VAE
(standardized, float32), scored, and turned into Python lists; a row whose values overflow
float32 is scored as zeros and marked, and its event answered with a 400 (never a NaN
score, never counted as scored). Each event's reply takes its slice of those lists. The reply body mirrors
alibi-detect's own ``predict`` output (what Seldon/KServe outlier servers return):

    {"data": {"instance_score": [..], "is_outlier": [0|1, ..], "feature_score": [[..]] | null,
              "threshold": t},
     "meta": {"name": "OutlierVAE", "detector_type": "outlier", ...}}

The VAE is scored in NumPy when the artifact is a dense VAE with the arrays `vigil train` writes
(`dense`: the service then never imports TensorFlow), else in TensorFlow (`scorer`); the log says which.

Rows holding a missing value are skipped (the frame counts them in
``vigil_instances_skipped_total``): their place in each per-row list is ``null``; an unseen
category is scored as code k (it is, after all, unlike the training data).

Accounting (counters, score histogram, the recent-window outlier rate) happens once per
batch, in the worker thread that owns the model; the score histogram takes a batch's
scores at once (`observe_many`, tested against prometheus-client's own ``observe``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from vigil.events import PayloadError
from vigil.telemetry import ServiceMetrics, _Bound
from vigil_detectors.frame import Detector, DetectorError, InferenceEvent
from vigil_detectors.outlier.batcher import MicroBatcher
from vigil_detectors.outlier.settings import OutlierSettings

if TYPE_CHECKING:  # imported in load()
    from vigil_detectors.outlier.scorer import ScorerBase

log = logging.getLogger("vigil.outlier")

#: score histogram buckets as multiples of the threshold (a bucket edge sits exactly on it)
_SCORE_FACTORS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)


def _score_buckets(threshold: float) -> list[float]:
    if not np.isfinite(threshold) or threshold <= 0:
        return [0.01, 0.1, 0.5, 1, 2, 5, 10, 100, 1000]
    return sorted({float(f"{threshold * f:.4g}") for f in _SCORE_FACTORS if f != 1.0} | {float(threshold)})


def _batch_buckets(max_batch_size: int) -> list[float]:
    edges, b = [], 1
    while b < max_batch_size:
        edges.append(float(b))
        b *= 2
    edges.append(float(max_batch_size))
    return edges


def observe_many(histogram, values: np.ndarray) -> None:
    """``for v in values: histogram.observe(v)`` for a prometheus-client `Histogram` child, in one pass:
    each bucket incremented once by its count (values must be finite)."""
    if not len(values):
        return
    bounds = histogram._upper_bounds  # ascending, the last +Inf; observe() counts v in the first bound >= v
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(np.sum(values)))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


def _jsonable(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _aligned(values: list, skipped: Optional[np.ndarray]) -> list:
    """Per-row values of the rows scored, with None in the place of each skipped row (a missing value)."""
    if skipped is None or not skipped.any():
        return values
    it = iter(values)
    return [None if s else next(it) for s in skipped.tolist()]


class RecentRate:
    """Share of outliers among the last `size` instances (single writer, cheap reads)."""

    def __init__(self, size: int):
        self._flags: collections.deque[int] = collections.deque(maxlen=size)
        self._sum = 0

    def add(self, flags) -> None:
        """Append 0/1 flags (a sequence or an array), the oldest dropping out of the window."""
        window, size = self._flags, self._flags.maxlen or 0
        kept = (flags.tolist() if isinstance(flags, np.ndarray) else list(flags))[-size:]
        dropped = max(0, len(window) + len(kept) - size)
        self._sum += sum(kept) - (sum(itertools.islice(window, dropped)) if dropped else 0)
        window.extend(kept)

    @property
    def count(self) -> int:
        return len(self._flags)

    @property
    def rate(self) -> float:
        n = len(self._flags)
        return self._sum / n if n else 0.0


def _not_finite(a: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows (instances) of `a` holding an inf or a NaN."""
    return ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)


class OutlierDetector(Detector[OutlierSettings]):
    name = "outlier"
    accepts = frozenset({"request"})

    @property
    def fetch_batch(self) -> int:  # JetStream: one fetch fills one scoring batch
        return self.settings.max_batch_size

    def __init__(self, settings: OutlierSettings, metrics: ServiceMetrics):
        super().__init__(settings, metrics)
        m = metrics
        self.m_instances = m.counter("vigil_outlier_instances_total", "Instances scored by the outlier detector.")
        self.m_outliers = m.counter("vigil_outlier_outliers_total", "Instances whose score is above the threshold.")
        self.m_threshold = m.gauge("vigil_outlier_threshold", "Instance score above which an instance is an outlier.")
        self.m_rate = m.gauge("vigil_outlier_recent_rate",
                              "Share of outliers among the most recent instances (rate_window of them).")
        self.m_batch = m.histogram("vigil_outlier_batch_size", "Rows scored per VAE call (micro-batching).",
                                   buckets=_batch_buckets(settings.max_batch_size))
        self.m_batch_seconds = m.histogram("vigil_outlier_batch_duration_seconds", "Duration of one VAE call.",
                                           buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
        self.m_score: Optional[_Bound] = None  # its buckets depend on the threshold: made in load()
        self._score_child: Any = None  # its unlabelled series (for `observe_many`)
        self.scorer: Optional[ScorerBase] = None
        self.batcher: Optional[MicroBatcher] = None
        self.recent = RecentRate(settings.rate_window)
        self.seen = 0
        self.flagged = 0
        self._lock = threading.Lock()
        self._meta: dict[str, Any] = {}
        self._feature_scores = False

    # -- lifecycle ------------------------------------------------------------
    def load(self) -> None:
        s = self.settings
        if not s.artifact:
            raise DetectorError("no outlier artifact configured (VIGIL_OUTLIER_ARTIFACT); train one with "
                                "`vigil train` or set detectors.outlier.storageUri")
        try:
            scorer = self._load_scorer()
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise DetectorError(f"cannot use outlier artifact {s.artifact}: {exc}") from exc
        if s.shape and tuple(s.shape) != scorer.shape:
            raise DetectorError(f"outlier artifact {s.artifact} takes instances of shape {list(scorer.shape)}, but "
                                f"the monitor's schema.shape is {list(s.shape)}")
        if s.shape is None and len(scorer.shape) > 1:
            raise DetectorError(f"outlier artifact {s.artifact} takes tensor instances of shape {list(scorer.shape)}; "
                                "set schema.shape in the monitor")
        trained = scorer.trained_features
        if trained and s.feature_names and list(trained) != list(s.feature_names):
            raise DetectorError(f"outlier artifact {s.artifact} was trained on features {list(trained)}, "
                                f"but the monitor declares {list(s.feature_names)}")
        self.scorer = scorer
        self.m_threshold.set(scorer.threshold)
        self.m_score = self.metrics.histogram("vigil_outlier_score", "Instance outlier scores (VAE reconstruction "
                                              "error); the threshold is a bucket edge.",
                                              buckets=_score_buckets(scorer.threshold))
        self._score_child = self.m_score.labels()
        self._meta = _jsonable(scorer.meta)
        # per-feature (per-pixel) scores: as configured, by default only for tensor instances (DESIGN §8)
        self._feature_scores = s.feature_scores if s.feature_scores is not None else len(scorer.shape) > 1

    def _load_scorer(self) -> ScorerBase:
        """NumPy for a dense VAE with its arrays (`dense`), else TensorFlow (which the service then loads)."""
        s = self.settings
        assert s.artifact
        from vigil_detectors.outlier import dense

        try:
            scorer: ScorerBase = dense.DenseScorer.load(s.artifact, s.feature_names)
            log.info("outlier: scoring with NumPy (%s), TensorFlow not loaded", dense.WEIGHTS)
            return scorer
        except dense.Unavailable as why:
            log.info("outlier: scoring with TensorFlow: %s", why)
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2: before TensorFlow is first imported
        from vigil_detectors.outlier.scorer import VAEScorer, configure_threads

        configure_threads(s.tf_threads)
        return VAEScorer.load(s.artifact, s.feature_names)

    async def start(self) -> None:
        self.batcher = MicroBatcher(self._score_batch, self.settings.max_batch_size,
                                    self.settings.max_batch_delay_ms / 1000.0, on_batch=self._on_batch)
        await self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    # -- scoring ------------------------------------------------------------------
    def _score_batch(self, rows: np.ndarray):
        """Runs in the batcher's worker thread: prepare and score the stacked rows in one VAE call, account for
        them, and give back (scores, flags, feature scores or None, overflowed rows or None) as Python lists."""
        scorer, hist = self.scorer, self._score_child
        assert scorer is not None and hist is not None  # loaded: the frame sends events only then
        x = scorer.prepare(rows)
        overflowed = _not_finite(x)  # float32 overflow: scored as zeros, its event is answered with a 400
        if overflowed.any():
            x[overflowed] = 0
        with np.errstate(over="ignore", invalid="ignore"):  # huge finite rows can overflow inside the VAE
            scores, feature_scores, flags = scorer.score(x)
        # ... and an inf/NaN score would poison the histogram: answered with the same 400
        bad = overflowed | _not_finite(scores)
        if not bad.any():
            bad = None
        counted_scores, counted_flags = (scores, flags) if bad is None else (scores[~bad], flags[~bad])
        n, k = len(counted_flags), int(counted_flags.sum())
        with self._lock:
            self.seen += n
            self.flagged += k
            self.recent.add(counted_flags)
            rate = self.recent.rate
        self.m_instances.inc(n)
        if k:
            self.m_outliers.inc(k)
        self.m_rate.set(rate)
        observe_many(hist, counted_scores)
        features: Any = None
        if self._feature_scores and scorer.image:  # 3,072 per image: the float32 array (orjson writes it fast)
            features = np.ascontiguousarray(feature_scores, dtype=np.float32)
        elif self._feature_scores:
            features = feature_scores.tolist()
        return scores.tolist(), flags.tolist(), features, None if bad is None else bad.tolist()

    def _on_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.m_batch.observe(rows)
        self.m_batch_seconds.observe(seconds)

    async def process(self, event: InferenceEvent) -> Optional[dict]:
        rows = event.instances
        # the frame calls process only once loaded and started, with decoded request instances
        assert self.scorer is not None and self.batcher is not None and rows is not None
        shape = self.scorer.shape
        if len(shape) > 1:
            if rows.shape[1:] != shape:
                raise PayloadError("bad_shape", f"expected instances of shape {list(shape)}, got instance shape "
                                                f"{list(rows.shape[1:])}")
        elif rows.shape[1] != shape[0]:
            raise PayloadError("feature_count", f"expected {shape[0]} features per row, got {rows.shape[1]}")
        skipped = event.skipped
        if rows.shape[0] == 0:  # every row held a missing value: skipped and counted by the frame
            scores, flags, feature_scores = [], [], []
        else:
            scores, flags, feature_scores, bad = await self.batcher.submit(rows)
            if bad is not None and True in bad:
                raise PayloadError("out_of_range", "feature values too large for the detector (float32 overflow)")
        data = {"instance_score": _aligned(scores, skipped), "is_outlier": _aligned(flags, skipped),
                "feature_score": _aligned(feature_scores, skipped) if self._feature_scores else None,
                "threshold": self.scorer.threshold}
        return {"data": data, "meta": self._meta}

    def status(self) -> dict[str, Any]:
        with self._lock:
            block: dict[str, Any] = {"rate": self.recent.rate, "seen": self.seen, "outliers": self.flagged,
                     "window": self.recent.count}
        block["threshold"] = self.scorer.threshold if self.scorer else None
        block["batches"] = self.batcher.batches if self.batcher else 0
        return {"outliers": block}
