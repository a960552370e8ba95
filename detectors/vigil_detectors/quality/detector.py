"""The quality detector: request instances checked against the baseline's constraints, window by window.

`QualityDetector` plugs into the detector frame. At start-up it gets its constraints from
`constraints.load_constraints` (shared with `vigil report`): the baseline (``baseline``: a
directory, `vigil.baseline.load_baseline`) or, when the monitor has none, ``reference``
profiled into one (`compute_baseline`, written to ``<state dir>/baseline`` so it can be
looked at and edited). Request bodies are decoded leniently
(`vigil.instances.decode_table(..., strict=False)`: a null, a string in a numeric column or an
unknown key is a finding, not a 400), every instance's flags are counted in
``vigil_quality_violations_total{feature,check}`` and summed into the window
(`window.QualityWindow`); each completed window (size, or maxAge on a quiet stream) gets a
`checks.Report`: ``vigil_quality_violation_ratio{feature,check}``, one line in the history
(``<state dir>/history.jsonl``, `GET /history?limit=N`), ``/status`` and the reply body of
the event that completed it::

    {"quality": {"violations": 2, "featuresViolated": [...], "lastCheck": ..., "trigger": "full",
                 "report": {"instances", "violations": [{feature_name, constraint_check_type, ...}], ...}}}
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from vigil.telemetry import ServiceMetrics
from vigil_detectors.frame import Detector, InferenceEvent
from vigil_detectors.frame.age import AgeTimer
from vigil_detectors.frame.history import iso_utc
from vigil_detectors.quality.checks import CHECKS, EXTRA, Compiled, Counts, Report, verdict
from vigil_detectors.quality.settings import QualitySettings
from vigil_detectors.quality.window import QualityWindow

log = logging.getLogger("vigil.quality")

class QualityDetector(Detector[QualitySettings]):
    name = "quality"
    accepts = frozenset({"request"})

    def __init__(self, settings: QualitySettings, metrics: ServiceMetrics):
        super().__init__(settings, metrics)
        self.schema: Any = None
        self.compiled: Optional[Compiled] = None
        self.window: Optional[QualityWindow] = None
        self.history: Any = None
        self.baseline_dir: Optional[str] = None
        self.last: Optional[dict[str, Any]] = None
        self.windows = 0
        self._lock = asyncio.Lock()
        self._timer = AgeTimer(settings.max_age_seconds, self._lock, self._age_check, log, "quality")
        m = metrics
        self._instances = m.counter("vigil_quality_instances_total", "Instances checked against the constraints.")
        self._violations = m.counter("vigil_quality_violations_total",
                                     "Instances violating a constraint, per feature and check (unknown keys under "
                                     "feature _extra).", ["feature", "check"])
        self._ratio = m.gauge("vigil_quality_violation_ratio",
                              "Share of the last window's instances violating the check.", ["feature", "check"])
        self._window_violations = m.gauge("vigil_quality_window_violations",
                                          "Checks the last window violated (beyond what a clean stream gives).")
        self._features = m.gauge("vigil_quality_features_violated", "Features with a violation in the last window.")
        self._windows = m.counter("vigil_quality_windows_total", "Windows checked, by trigger.", ["trigger"])
        self._last_ts = m.gauge("vigil_quality_last_check_timestamp_seconds", "Unix time of the last window check.")
        self._history_errors = m.counter("vigil_history_write_errors_total",
                                         "Window checks that could not be appended to the history file.")
        self._fill = m.gauge("vigil_quality_window_fill_ratio", "Share of the window filled (0..1).")
        self._fill.set_function(lambda: self.window.fill / self.window.size if self.window else 0.0)

    # -- start-up --
    def load(self) -> None:
        from vigil_detectors.quality.constraints import load_constraints

        s = self.settings
        loaded = load_constraints(s)  # shared with vigil report
        self.schema, self.compiled, self.baseline_dir = loaded.schema, loaded.compiled, loaded.directory
        names = loaded.names
        self.window = QualityWindow(s.window_size, self.compiled)
        for name, c in zip(names, self.compiled.constraints, strict=True):  # every series exists from the start
            for check in CHECKS[:4]:
                self._violations.labels(feature=name, check=check)
            if c is None:
                log.warning("quality: no constraints for feature %s (not checked)", name)
        self._violations.labels(feature=EXTRA, check="extraColumns")
        if s.state_dir:
            from vigil_detectors.frame.history import History

            self.history = History.in_dir(s.state_dir, s.history_max_bytes)
            if self.window.restore(s.state_dir):
                log.info("quality: continuing the saved window (%d/%d instances)", self.window.fill, self.window.size)
            tail = self.history.tail(1)
            if tail:
                self.last = tail[-1]
                self.windows = int(self.last.get("window", 0))
                self._publish(self.last)

    async def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        self._timer.stop()
        if self.settings.state_dir and self.window is not None and self.window.fill:
            async with self._lock:
                try:
                    self.window.save(self.settings.state_dir)
                except OSError as exc:
                    log.error("quality: cannot save the partial window: %s", exc)

    # -- ingest --
    def decode_request(self, event: InferenceEvent) -> None:
        from vigil.instances import decode_table

        decoded = decode_table(event.data, self.schema, strict=False)
        event.instances = decoded.rows
        event.extra["decoded"] = decoded

    async def process(self, event: InferenceEvent) -> Optional[dict]:
        decoded = event.extra["decoded"]
        assert self.window is not None and self.compiled is not None  # loaded before any event
        async with self._lock:
            batch, done = self.window.add(decoded, time.time())
            self._count(batch)
            body = None
            for counts in done:
                body = self._record(counts, "full")
            return body

    def _count(self, batch: Counts) -> None:
        assert self.compiled is not None
        self._instances.inc(batch.instances)
        for check, per in batch.flags.items():
            for j in per.nonzero()[0]:
                self._violations.labels(feature=self.compiled.names[j], check=check).inc(int(per[j]))
        if batch.extra:
            self._violations.labels(feature=EXTRA, check="extraColumns").inc(batch.extra)

    async def _age_check(self, now: float) -> None:
        """The maxAge timer's tick (under the lock): a window whose oldest instance is maxAge old is checked."""
        assert self.window is not None  # made in load(), which the frame runs before start()
        counts = self.window.due(now, self.settings.max_age_seconds)
        if counts is not None:
            self._record(counts, "max_age")

    # -- checks --
    def _record(self, counts: Counts, trigger: str) -> dict:
        assert self.compiled is not None
        report = verdict(counts, self.compiled)
        now = time.time()
        self.windows += 1
        entry = {"window": self.windows, "time": iso_utc(now), "timestamp": now, "trigger": trigger,
                 "violations": len(report.violations), "featuresViolated": report.features_violated,
                 "report": report.to_json()}
        self.last = entry
        self._windows.labels(trigger=trigger).inc()
        self._publish(entry, report)
        if self.history is not None:
            try:
                self.history.append(entry)
            except OSError as exc:
                self._history_errors.inc()
                log.error("quality: cannot append to the history %s: %s", self.history.path, exc)
        if report.violations:
            log.info("quality: window %d violates %s", self.windows,
                     ", ".join(f"{v['feature_name']}/{v['constraint_check_type']} ({v['ratio']:.1%})"
                               for v in report.violations))
        return {"quality": self._block(entry)}

    def _publish(self, entry: dict, report: Optional[Report] = None) -> None:
        self._window_violations.set(entry["violations"])
        self._features.set(len([f for f in entry["featuresViolated"] if f != EXTRA]))
        self._last_ts.set(entry["timestamp"])
        if report is not None:
            for (feature, check), e in report.checks.items():
                self._ratio.labels(feature=feature, check=check).set(e["ratio"])
        else:  # restored from the history: the ratios it kept (nonzero ones)
            for feature, checks in entry["report"].get("counts", {}).items():
                for check, e in checks.items():
                    self._ratio.labels(feature=feature, check=check).set(e["ratio"])

    @staticmethod
    def _block(entry: dict) -> dict:
        return {"violations": entry["violations"], "featuresViolated": entry["featuresViolated"],
                "lastCheck": entry["time"], "trigger": entry["trigger"], "window": entry["window"],
                "report": entry["report"]}

    # -- status --
    def status(self) -> dict[str, Any]:
        w, s = self.window, self.settings
        assert w is not None
        block: dict[str, Any] = {"violations": 0, "featuresViolated": [], "lastCheck": None}
        if self.last:
            block.update(self._block(self.last))
        block.update({"windows": self.windows, "fill": w.fill, "windowSize": w.size, "maxAgeSeconds": s.max_age_seconds,
                      "ageSeconds": round(w.age(time.time()), 3), "instances": w.seen, "baseline": self.baseline_dir,
                      "persisted": self.history is not None})
        return {"quality": block}

    def routers(self) -> list:
        from vigil_detectors.frame.history_api import history_router

        return [history_router(lambda: self.history)]
