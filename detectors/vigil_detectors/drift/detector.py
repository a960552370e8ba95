"""The drift detector: request events fill a window; each due window is tested against the reference.

`DriftDetector` plugs into the detector frame (`vigil_detectors.frame`). At start-up it
gets its drift check from `fitting.fit_check` (which `vigil report` shares): fitted from
``reference`` (the monitor's default statistic, per-feature overrides, categorical
features declared or inferred) or loaded from a saved one (``artifact``: Vigil's own or
an alibi-detect detector), and restores its window from ``state_dir`` (`window`). Each request event's rows are logged to the
checkpoint and appended to the window before the event is acknowledged; when a window is
due (full, every `step` in sliding mode, or `maxAge` on a quiet stream, checked by a
timer) the check runs while ingestion waits — on the event loop when the last one took
under `INLINE_CHECK_SECONDS` (a thread hand-off costs more than such a check), else in a
worker thread so health probes answer meanwhile — and the result goes to
metrics, `/status`, the reply CloudEvent and the checkpoint.

Reply body of an event that completed a check (202 with no body otherwise)::

    {"drift": {"detected", "pValue", "featuresDrifted", "threshold", "lastCheck", "trigger",
               "checkedInstances",
               "features": {name: {"test", "score", "threshold", "drifted", "pValue"?, "distance"}}},
     "data": {"is_drift", "p_val", "threshold", "distance"}}   # alibi-detect's shape

Per feature, `test` names the statistic, `score` is its value (KS D, chi-squared, PSI, …;
`distance` repeats it for older readers) and `drifted` compares it with `threshold`: for
p-value tests (ks, chi2) the raw `pValue` against the corrected significance (`threshold`
of the window), for distances the score against the statistic's threshold. The window's
`pValue` is the smallest p-value adjusted for the correction (Bonferroni or
Benjamini–Hochberg over the p-value-tested features; null when none is), so with p-value
tests alone ``detected == pValue < significance``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import numpy as np

from vigil.events import PayloadError
from vigil.telemetry import ServiceMetrics
from vigil_detectors.drift import preprocess as _preprocess
from vigil_detectors.drift.fitting import fit_check
from vigil_detectors.drift.outputs import OutputEncoding
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import CheckResult, DriftStatistic, fit_statistic
from vigil_detectors.drift.statistics.suite import MAX_CATEGORIES
from vigil_detectors.drift.targets import Target, fit_targets
from vigil_detectors.drift.window import DriftWindow, WindowStore
from vigil_detectors.frame import Detector, DetectorError, InferenceEvent
from vigil_detectors.frame.age import AgeTimer
from vigil_detectors.frame.checkpoint import CheckpointError
from vigil_detectors.frame.history import History
from vigil_detectors.frame.history import iso_utc as _iso

log = logging.getLogger("vigil.drift")


#: A check that took less than this runs on the event loop the next time (ingestion waits for it
#: either way); a slower one (a large window, many encoded features) runs in a worker thread.
INLINE_CHECK_SECONDS = 0.01


async def run_check(check, rows: np.ndarray, inline: bool) -> tuple[Any, bool]:
    """`check(rows)` on the loop when `inline`, else in a worker thread; also whether the next
    check of its kind may run inline (this one's CPU time was under `INLINE_CHECK_SECONDS`)."""
    def timed():  # the check's own CPU time: a busy machine's wait does not count
        started = time.thread_time()
        return check(rows), time.thread_time() - started < INLINE_CHECK_SECONDS

    return timed() if inline else await asyncio.to_thread(timed)


def _floats(values: np.ndarray) -> list[Optional[float]]:
    return [None if np.isnan(v) else float(v) for v in values]


def _feature(result: CheckResult, i: int) -> dict[str, Any]:
    """One feature's entry of the reply and /status (see the module docstring)."""
    score = float(result.distances[i])
    out: dict[str, Any] = {"test": result.tests[i] if i < len(result.tests) else None, "score": score,
                           "threshold": None if result.thresholds is None else float(result.thresholds[i]),
                           "drifted": i in result.drifted, "distance": score}
    if not np.isnan(result.p_values[i]):
        out["pValue"] = float(result.p_values[i])
    return out


class DriftDetector(Detector[DriftSettings]):
    name = "drift"
    accepts = frozenset({"request"})
    ordered = True  # JetStream: the window takes a batch in stream order (see holds)

    def __init__(self, settings: DriftSettings, metrics: ServiceMetrics):
        super().__init__(settings, metrics)
        self.statistic: Optional[DriftStatistic] = None
        self.preprocess: Optional[_preprocess.Preprocessor] = None  # tensor instances -> encoded rows (UAE)
        self.window: Optional[DriftWindow] = None
        self.store: Optional[WindowStore] = None
        self.history: Optional[History] = None  # one line per window check (state dir only)
        self.encoding: Optional[OutputEncoding] = None  # target outputs/both
        self.targets: dict[str, Target] = {}  # outputs, labels (`targets`)
        # model-output preprocessing: the "inputs" are the model's class probabilities, from its responses
        inputs = {"response"} if settings.preprocess == "model-output" else {"request"}
        kinds = {"inputs": inputs, "outputs": {"response"}, "both": inputs | {"response"}}[settings.target]
        if settings.labels and settings.target != "inputs":
            kinds.add("feedback")
        self.accepts = frozenset(kinds)
        self.feature_names: list[str] = list(settings.feature_names or [])
        self.windows = 0
        self.last: Optional[dict[str, Any]] = None
        self.stale = False  # the last verdict was restored from a checkpoint older than maxAge
        self._lock = asyncio.Lock()
        self._inline = False  # run the next check on the event loop (`run_check`)
        self._timer = AgeTimer(settings.max_age_seconds, self._lock, self._age_check, log, "drift")

        m = metrics
        self._detected = m.gauge("vigil_drift_detected", "1 if the last checked window drifted, else 0.")
        self._p_value = m.gauge("vigil_drift_p_value",
                                "Per-feature p-value of the last check (uncorrected; p-value tests only).",
                                ["feature"])
        self._distance = m.gauge("vigil_drift_distance",
                                 "Per-feature score of the last check (as vigil_drift_score).", ["feature"])
        self._score = m.gauge("vigil_drift_score", "Per-feature score of the last check (KS D, chi-squared, PSI, ...).",
                              ["feature", "statistic"])
        self._threshold = m.gauge("vigil_drift_threshold",
                                  "Per-feature threshold of the last check: the corrected p-value threshold for "
                                  "p-value tests, the score threshold for distances.", ["feature", "statistic"])
        self._p_min = m.gauge("vigil_drift_p_value_adjusted",
                              "Smallest per-feature p-value of the last check, adjusted for the correction.")
        self._drifted = m.gauge("vigil_drift_features_drifted", "Features that drifted in the last check.")
        self._windows = m.counter("vigil_drift_windows_total", "Windows checked for drift.")
        self._history_errors = m.counter("vigil_history_write_errors_total",
                                         "Window checks that could not be appended to the history file.")
        self._checks = m.counter("vigil_drift_checks_total", "Drift checks by trigger and result.",
                                 ["trigger", "result"])
        self._instances = m.counter("vigil_drift_instances_total", "Instances added to the drift window.")
        self._duration = m.histogram("vigil_drift_check_duration_seconds", "Time to test one window.",
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self._last_ts = m.gauge("vigil_drift_last_check_timestamp_seconds", "Unix time of the last check.")
        self._fill = m.gauge("vigil_drift_window_fill_ratio", "Share of the window filled (0..1).")
        self._age = m.gauge("vigil_drift_window_age_seconds", "Age of the oldest instance not yet checked.")
        self._fill.set_function(lambda: self.window.fill_ratio if self.window else 0.0)
        self._age.set_function(lambda: self.window.age(time.time()) if self.window else 0.0)

    # -- start-up --
    def load(self) -> None:
        s = self.settings
        kind = _preprocess.read_config(s.artifact)["type"] if s.artifact and _preprocess.is_preprocessed(s.artifact) \
            else None
        if kind != s.preprocess and kind is not None and s.preprocess is not None:
            raise DetectorError(f"the drift artifact {s.artifact} was trained for preprocess {kind}, "
                                f"the monitor says {s.preprocess}")
        if kind == "uae":
            # KS per encoded dimension, on the reference the artifact encoded with its saved weights
            assert s.artifact is not None  # kind comes from it
            self.preprocess = _preprocess.load_preprocessor(s.artifact)
            self.statistic = fit_statistic(self.preprocess.reference, p_value=s.p_value, correction=s.correction,
                                           kind=s.statistic)
            self.feature_names = list(self.preprocess.feature_names)
        elif kind == "model-output":  # a drift suite on the reference's class probabilities
            self.statistic = fit_check(s)
            self.feature_names = [f"proba_{i}" for i in range(self.statistic.n_features)]
        elif s.preprocess:
            raise DetectorError(f"drift preprocess {s.preprocess!r} needs the artifact vigil train writes "
                                f"(VIGIL_DRIFT_ARTIFACT {s.artifact or 'not set'} has no {_preprocess.CONFIG})")
        else:
            self.statistic = fit_check(s)
        if s.target != "inputs" and s.preprocess == "model-output":
            raise DetectorError("drift preprocess model-output already tests the model's outputs: use target inputs")
        if s.target != "inputs":
            from vigil.data import load_table

            x_ref = load_table(s.reference, s.feature_names) if s.reference else getattr(self.statistic, "x_ref", None)
            if x_ref is None or self.preprocess is not None:
                raise DetectorError("drift of the model's outputs needs tabular reference data (VIGIL_DRIFT_REFERENCE)")
            try:
                self.encoding, self.targets = fit_targets(s, x_ref)
            except (ValueError, RuntimeError) as exc:
                raise DetectorError(f"drift of the model's outputs: {exc}") from exc
            for t in self.targets.values():
                log.info("drift %s: statistics per feature: %s", t.name,
                         ", ".join(f"{n}={x}" for n, x in zip(t.feature_names, t.suite.tests, strict=True)))
        n = self.statistic.n_features
        if self.feature_names and len(self.feature_names) != n:
            raise DetectorError(f"{len(self.feature_names)} feature names for a drift detector of {n} features")
        if not self.feature_names:
            self.feature_names = [f"f{i}" for i in range(n)]
        inferred = getattr(self.statistic, "inferred", [])
        if inferred:
            log.info("drift: tested as categorical (the reference holds at most %d distinct values; declare them in "
                     "schema.categorical to silence this): %s", MAX_CATEGORIES,
                     ", ".join(self.feature_names[i] for i in inferred))
        log.info("drift: statistics per feature: %s",
                 ", ".join(f"{name}={test}" for name, test in zip(self.feature_names, self.statistic.tests, strict=True)))
        self.window = DriftWindow(s.window_size, n, s.window_mode, s.window_step)
        if s.state_dir:
            self.history = History.in_dir(s.state_dir)
            self.store = WindowStore(s.state_dir, n)
            extra, due = self.store.restore(self.window)
            self.windows = int(extra.get("windows", 0))
            self.last = extra.get("last")
            if self.windows:
                self._windows.inc(self.windows)
            if self.window.seen:
                self._instances.inc(self.window.seen)
            if self.last:
                self._publish(self.last)
                age = time.time() - float(self.last.get("lastCheckTimestamp") or 0)
                self.stale = 0 < s.max_age_seconds < age  # a verdict older than maxAge is not current
            for rows in due:  # windows the log replay completed: check them now
                self._record(self.statistic.check(rows), "restore", rows.shape[0], 0.0)
            if due:
                self._snapshot()
            log.info("drift window restored from %s: %d/%d instances, %d windows checked",
                     s.state_dir, self.window.fill, self.window.size, self.windows)
        else:
            log.warning("VIGIL_DRIFT_STATE_DIR not set: the drift window is not persisted across restarts")

    async def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        self._timer.stop()
        async with self._lock:
            if self.store:
                self._snapshot()
                self.store.close()
                self.store = None

    # -- ingest --
    def decode_outputs(self, data: Any) -> Optional[np.ndarray]:
        """A response body: the class probabilities (model-output preprocessing), or the rows of output
        features of target outputs/both (``prediction``, ``proba_<class>``)."""
        if self.settings.preprocess == "model-output":
            return _preprocess.probabilities(data)
        if self.encoding is not None:
            return self.encoding.encode(data)
        return super().decode_outputs(data)

    async def process(self, event: InferenceEvent) -> Optional[dict]:
        if event.kind == "feedback" or (event.kind == "response" and self.settings.preprocess != "model-output"):
            return await self._process_target(event)
        rows = event.outputs if self.settings.preprocess == "model-output" else event.instances
        # the frame calls process only once loaded, with decoded request instances
        assert self.statistic is not None and self.window is not None and rows is not None
        if self.preprocess is not None:  # encode once, at ingest: the window holds the encodings
            rows = await asyncio.to_thread(self.preprocess, rows)
        n = self.statistic.n_features
        if rows.shape[1] != n:
            raise PayloadError("feature_count", f"expected {n} features per row, got {rows.shape[1]}")
        if rows.shape[0] == 0:  # every row held a missing value: skipped and counted by the frame
            return None
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        async with self._lock:
            now = time.time()
            if self.store:
                try:
                    # in the checkpoint (with its stream sequence, under JetStream) before it is acknowledged
                    self.store.append(rows, now, event.extra.get("sequence"))
                except OSError as exc:
                    self.checkpoint.failed("event log", exc)
                    raise CheckpointError(str(exc)) from None
                self.checkpoint.ok()
            due = self.window.add(rows, now)
            self._instances.inc(rows.shape[0])
            if not due:
                return None
            trigger = "step" if self.window.mode == "sliding" else "full"
            body = None
            for window in due:
                body = await self._check(window, trigger)
            return body

    async def _process_target(self, event: InferenceEvent) -> Optional[dict]:
        """A response (outputs) or feedback (labels) event into its target's window; check when due."""
        assert self.encoding is not None
        if event.kind == "response":
            target, rows = self.targets["outputs"], event.outputs
        else:
            target, rows = self.targets["labels"], self.encoding.truths(event.data)
        assert rows is not None
        async with self._lock:
            due = target.window.add(np.ascontiguousarray(rows, dtype=np.float64), time.time())
            body = None
            for window in due:
                body = await self._check_target(target, window, "step" if target.window.mode == "sliding" else "full")
            return body

    async def _check_target(self, target: Target, rows: np.ndarray, trigger: str) -> Optional[dict]:
        started = time.perf_counter()
        try:
            result, target.inline = await run_check(target.suite.check, rows, target.inline)
        except Exception:
            log.exception("drift check of %d %s failed", rows.shape[0], target.name)
            self._checks.labels(trigger=trigger, result="error").inc()
            return None
        now, names = time.time(), target.feature_names
        block: dict[str, Any] = {
            "target": target.name, "detected": result.detected, "pValue": result.p_value,
            "featuresDrifted": [names[i] for i in result.drifted], "threshold": result.threshold,
            "lastCheck": _iso(now), "lastCheckTimestamp": now, "trigger": trigger,
            "checkedInstances": int(rows.shape[0]),
            "features": {names[i]: _feature(result, i) for i in range(len(names))}}
        target.windows += 1
        target.last = block
        self._windows.inc()
        self._checks.labels(trigger=trigger, result="drift" if result.detected else "no_drift").inc()
        self._duration.observe(time.perf_counter() - started)
        self._publish_features(block)
        self._detected.set(1 if self._any_detected() else 0)
        self._remember(block, target.windows)
        if result.detected:
            log.info("drift of the %s detected in %s", target.name, ", ".join(block["featuresDrifted"]) or "-")
        return {"drift": block}

    def _any_detected(self) -> bool:
        return bool((self.last or {}).get("detected")) or any(t.last.get("detected") for t in self.targets.values())

    def holds(self, sequence: int) -> bool:
        return self.store is not None and self.store.holds(sequence)

    async def _age_check(self, now: float) -> None:
        """The maxAge timer's tick (under the lock): a window pending for maxAge is checked as it is."""
        assert self.window is not None  # made in load(), which the frame runs before start()
        rows = self.window.due(now, self.settings.max_age_seconds)
        if rows is not None:
            await self._check(rows, "max_age")

    # -- checks --
    async def _check(self, rows: np.ndarray, trigger: str) -> Optional[dict]:
        assert self.statistic is not None  # loaded
        started = time.perf_counter()
        try:
            result, self._inline = await run_check(self.statistic.check, rows, self._inline)
        except Exception:
            log.exception("drift check of %d instances failed", rows.shape[0])
            self._checks.labels(trigger=trigger, result="error").inc()
            if self.store:
                self._snapshot()
            return None
        block = self._record(result, trigger, rows.shape[0], time.perf_counter() - started)
        if self.store:
            self._snapshot()
        return {"drift": block, "data": {"is_drift": int(result.detected), "p_val": _floats(result.p_values),
                                         "threshold": result.threshold, "distance": result.distances.tolist()}}

    def _record(self, result: CheckResult, trigger: str, n_rows: int, seconds: float) -> dict:
        now = time.time()
        names = self.feature_names
        block: dict[str, Any] = {
            "detected": result.detected,
            "pValue": result.p_value,
            "featuresDrifted": [names[i] for i in result.drifted],
            "threshold": result.threshold,
            "lastCheck": _iso(now),
            "lastCheckTimestamp": now,
            "trigger": trigger,
            "checkedInstances": int(n_rows),
            "features": {names[i]: _feature(result, i) for i in range(len(names))},
        }
        self.windows += 1
        self.last = block
        self.stale = False
        self._windows.inc()
        self._checks.labels(trigger=trigger, result="drift" if result.detected else "no_drift").inc()
        self._duration.observe(seconds)
        self._publish(block)
        self._remember(block, self.windows)
        if result.detected:
            log.info("drift detected (p=%s) in %s", "-" if result.p_value is None else f"{result.p_value:.3g}",
                     ", ".join(block["featuresDrifted"]) or "-")
        return block

    def _remember(self, block: dict, window: int) -> None:
        """Append the check to the history file: time, target, window index, verdict, per-feature results."""
        if self.history is None:
            return
        entry = {"time": block["lastCheck"], "timestamp": block["lastCheckTimestamp"],
                 "target": block.get("target", "inputs"), "window": window,
                 "trigger": block["trigger"], "checkedInstances": block["checkedInstances"],
                 "detected": block["detected"], "pValue": block["pValue"],
                 "featuresDrifted": block["featuresDrifted"],
                 "features": {name: {k: f[k] for k in ("test", "score", "threshold", "drifted", "pValue") if k in f}
                              for name, f in block["features"].items()}}
        try:
            self.history.append(entry)
        except OSError as exc:  # the verdict stands; only its record is lost (counted)
            self._history_errors.inc()
            log.warning("drift history append failed: %s", exc)

    def routers(self) -> list:
        from vigil_detectors.frame.history_api import history_router

        return [history_router(lambda: self.history)]

    def _publish(self, block: dict) -> None:
        self._detected.set(1 if block["detected"] or self._any_detected() else 0)
        if block.get("pValue") is not None:
            self._p_min.set(block["pValue"])
        self._drifted.set(len(block["featuresDrifted"]))
        self._last_ts.set(block["lastCheckTimestamp"])
        self._publish_features(block)

    def _publish_features(self, block: dict) -> None:
        for name, f in block["features"].items():
            score, test = f.get("score", f["distance"]), f.get("test") or "unknown"
            if f.get("pValue") is not None:
                self._p_value.labels(feature=name).set(f["pValue"])
            self._distance.labels(feature=name).set(score)
            self._score.labels(feature=name, statistic=test).set(score)
            if f.get("threshold") is not None:
                self._threshold.labels(feature=name, statistic=test).set(f["threshold"])

    def _snapshot(self) -> None:
        assert self.store is not None and self.window is not None  # callers check the store; the window precedes it
        try:  # a failed snapshot loses nothing: the current log still holds every kept event
            self.store.snapshot(self.window, {"windows": self.windows, "last": self.last})
        except OSError as exc:
            self.checkpoint.failed("snapshot", exc)

    # -- status --
    def status(self) -> dict[str, Any]:
        s, w, last = self.settings, self.window, self.last or {}
        assert w is not None and self.statistic is not None  # loaded: the frame asks for status only then
        block = {
            "detected": bool(last.get("detected", False)),
            "pValue": last.get("pValue"),
            "featuresDrifted": last.get("featuresDrifted", []),
            "lastCheck": last.get("lastCheck"),
            "windows": self.windows,
            "fill": w.fill,
            "fillRatio": w.fill_ratio,
            "windowSize": w.size,
            "mode": w.mode,
            "step": w.step,
            "maxAgeSeconds": s.max_age_seconds,
            "ageSeconds": round(w.age(time.time()), 3),
            "instances": w.seen,
            "threshold": last.get("threshold"),
            "significance": s.p_value,
            "correction": s.correction,
            "trigger": last.get("trigger"),
            "features": last.get("features", {}),
            "persisted": self.store is not None,
            "stale": self.stale,
        }
        block.update(self.statistic.describe())
        if self.preprocess is not None:
            block.update(self.preprocess.describe())
        block["target"] = s.target
        for name, target in self.targets.items():  # outputs / labels: their own block, merged into the verdict
            sub = block[name] = target.status()
            block["detected"] = block["detected"] or sub["detected"]
            block["featuresDrifted"] = [*block["featuresDrifted"], *sub["featuresDrifted"]]
            block["features"] = {**block["features"], **sub["features"]}
        return {"drift": block}
