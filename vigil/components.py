"""The component registry: one row per component Vigil can run, and the only list of them.

A `ComponentType` row says everything the rest of the system asks about a component: its
port offset under `vigil up` (DESIGN §5/§9: logger, model, outlier, drift, metrics,
explainer, quality = base+0 …), its settings class and app factory (import paths, so
importing this module imports no service, FastAPI app, TensorFlow or alibi), the event
kinds it consumes from the logger, the CloudEvent type of its replies, the block of its
``/status`` lifted into the monitor's ``.status``, whether ``vigil train`` can fit it, its
image, whether it needs TensorFlow, and — for detectors — the pydantic model of its
``spec.detectors.<name>`` block and the function that turns that block into its settings.

`vigil.plan` builds every component from these rows, `vigil.services` serves them, the
CLI offers their names, the operator renders them; adding a detector is one `register`
call (a row), one package (its service) and one spec block (the row's `spec_block`).
Third-party or test-only components are registered from the ``VIGIL_COMPONENTS``
environment variable (comma-separated modules to import or ``module:function`` to call,
when this module is imported), so the processes `vigil up` starts know them too.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from vigil import spec as _spec

if TYPE_CHECKING:
    from vigil.plan import BuildContext


def load_object(target: str) -> Any:
    """``"package.module:attr"`` -> the attribute (imports the module)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ComponentType:
    """One kind of component. `build(ctx, block)` returns its settings values (see `vigil.plan`)."""

    name: str
    port_offset: int
    settings: str  # import path of its pydantic-settings class ("module:Class")
    app: str  # import path of its create_app() factory
    build: Callable[[BuildContext, Any], dict[str, Any]]
    spec_block: Optional[type[BaseModel]] = None  # detectors: the model of spec.detectors.<name>
    consumes: tuple[str, ...] = ()  # logger event kinds sent to it (request, response, feedback)
    subscribes: Callable[[Any], bool] = lambda block: True  # whether its block wants events at all
    consumes_for: Optional[Callable[[Any], tuple[str, ...]]] = None  # kinds by block, when they depend on it
    reply_type: Optional[str] = None  # CloudEvent type of its replies
    status_key: Optional[str] = None  # key of the lifted block in .status (and in its /status)
    status_fields: Optional[tuple[str, ...]] = None  # keys of that block shown (None: all)
    trainable: bool = False  # `vigil train --component NAME` can fit its artifact
    image_role: str = "detectors"  # server | detectors
    tensorflow: Callable[[Any], bool] = lambda monitor: False  # needs TensorFlow for this monitor
    ready_path: str = "/readyz"
    endpoints: tuple[tuple[str, str], ...] = ()  # (name, path) users call, shown in .status.endpoints

    @property
    def detector(self) -> bool:
        return self.spec_block is not None

    def settings_class(self) -> type[BaseSettings]:
        return load_object(self.settings)

    @property
    def env_prefix(self) -> str:
        return self.settings_class().model_config["env_prefix"]

    def kinds(self, block: Any) -> tuple[str, ...]:
        """The event kinds the logger sends this component for its spec `block`."""
        return self.consumes_for(block) if self.consumes_for and block is not None else self.consumes

    def needs_tensorflow(self, monitor) -> bool:
        return bool(self.tensorflow(monitor))


_ROWS: dict[str, ComponentType] = {}


def register(row: ComponentType, *, replace: bool = False) -> ComponentType:
    """Add a component (a test's, a plugin's). Its spec block becomes valid in `spec.detectors`."""
    if not replace and row.name in _ROWS and _ROWS[row.name] != row:
        raise ValueError(f"component {row.name!r} is already registered")
    clash = [r.name for r in _ROWS.values() if r.port_offset == row.port_offset and r.name != row.name]
    if clash:
        raise ValueError(f"port offset {row.port_offset} of {row.name!r} is taken by {clash[0]!r}")
    _ROWS[row.name] = row
    _spec.set_detector_blocks({r.name: r.spec_block for r in rows() if r.spec_block is not None})
    return row


def unregister(name: str) -> None:
    _ROWS.pop(name, None)
    _spec.set_detector_blocks({r.name: r.spec_block for r in rows() if r.spec_block is not None})


def rows() -> list[ComponentType]:
    """Every component, in port order."""
    return sorted(_ROWS.values(), key=lambda r: r.port_offset)


def names() -> list[str]:
    return [r.name for r in rows()]


def detectors() -> list[ComponentType]:
    return [r for r in rows() if r.detector]


def trainable() -> list[str]:
    return [r.name for r in rows() if r.trainable]


def get(name: str) -> ComponentType:
    try:
        return _ROWS[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; one of {', '.join(names())}") from None


# ----------------------------------------------------------------------------- the built-in rows
# Each `build` maps the spec onto the component's settings fields; `ctx.at(value, path)`
# names the spec field a value came from, so a value the service would reject is a
# SpecError naming that field (see vigil.plan).

def _logger(ctx: BuildContext, lg) -> dict[str, Any]:
    metrics = getattr(ctx.monitor.spec.detectors, "metrics", None)  # feedback truth must fit its task and classes
    return {"upstream": ctx.upstream, "model_name": ctx.monitor.model_name,
            "mode": lg.mode, "sample_rate": ctx.at(lg.sample_rate, "spec.logger.sampleRate"),
            "queue_size": ctx.at(lg.queue_size, "spec.logger.queueSize"),
            "queue_bytes": ctx.at(_spec.parse_bytes(lg.queue_bytes), "spec.logger.queueBytes"),
            "upstream_timeout_seconds": ctx.at(_spec.parse_duration(lg.upstream_timeout), "spec.logger.upstreamTimeout"),
            "task": metrics.task if metrics else None, "classes": metrics.classes if metrics else None,
            "sinks": ctx.sinks(), "capture": _capture(ctx, lg.capture)}


def _capture(ctx: BuildContext, c) -> Optional[Any]:
    """``spec.logger.capture`` as the logger's `CaptureSettings` values (`vigil.capture`)."""
    if c is None:
        return None
    path = "spec.logger.capture"
    try:
        uri = ctx.writes(c.storage_uri)
    except _spec.SpecError as e:  # the placement's refusal (pvc:// without a cluster), named by its field
        raise _spec.SpecError(f"{path}.storageUri", e.message) from None
    return ctx.at({"uri": uri, "sample_rate": c.sample_rate, "format": c.format,
                   "rotate_seconds": _spec.parse_duration(c.rotate)}, path,
                  {"uri": f"{path}.storageUri", "sample_rate": f"{path}.sampleRate", "format": f"{path}.format",
                   "rotate_seconds": f"{path}.rotate"})


def _model(ctx: BuildContext, model) -> dict[str, Any]:
    return {"uri": ctx.at(ctx.path(model.storage_uri), "spec.model.storageUri"), "format": model.format,
            "name": ctx.monitor.model_name, "shape": ctx.shape, "feature_names": ctx.feature_names,
            "categorical": ctx.categorical()}


def _outlier(ctx: BuildContext, o) -> dict[str, Any]:
    return {"artifact": ctx.artifact(o), "feature_names": ctx.feature_names, "shape": ctx.shape,
            "categorical": ctx.categorical(),
            "max_batch_size": ctx.at(o.max_batch_size, "maxBatchSize"),
            "max_batch_delay_ms": ctx.at(o.max_batch_delay_ms, "maxBatchDelayMs")}


def _drift(ctx: BuildContext, d) -> dict[str, Any]:
    w = d.window
    # A drift detector with no artifact is fitted from reference at start-up (KS keeps x_ref); one with a
    # preprocessing step (the UAE's seeded weights) is trained by `vigil train` and loads that artifact.
    if d.preprocess is not None:  # model-output: the reference's class probabilities come from the model
        source = {"artifact": ctx.artifact(d, against_model=d.preprocess.type == "model-output"),
                  "preprocess": ctx.at(d.preprocess.type, "preprocess.type")}
    else:
        source = {"artifact": ctx.path(d.storage_uri) if d.storage_uri else None,
                  "reference": None if d.storage_uri else ctx.path(ctx.reference)}
    return {**source,
            "feature_names": ctx.feature_names, "shape": ctx.shape, "categorical": ctx.categorical(),
            "statistic": ctx.at(d.type, "type"), "statistics": ctx.at(d.statistics, "statistics"),
            "p_value": ctx.at(d.p_value, "pValue"),
            "correction": ctx.at(d.correction, "correction"),
            "window_size": ctx.at(w.size, "window.size"), "window_mode": ctx.at(w.mode, "window.mode"),
            "window_step": ctx.at(w.step, "window.step"),
            "max_age_seconds": ctx.at(w.max_age_seconds, "window.maxAge"),
            "state_dir": ctx.state_dir(), "baseline": _baseline_dir(ctx), **_drift_outputs(ctx, d)}


def _baseline_dir(ctx: BuildContext) -> Any:
    """An edited baseline's directory, when the monitor names one (else drift bins the reference itself)."""
    uri = ctx.monitor.spec.baseline.storage_uri
    return ctx.at(ctx.path(uri), "spec.baseline.storageUri") if uri else None


def _drift_outputs(ctx: BuildContext, d) -> dict[str, Any]:
    """Prediction drift runs the monitored model on the reference; label drift wants the metrics block."""
    if d.target == "inputs":
        return {"target": "inputs"}
    metrics = getattr(ctx.monitor.spec.detectors, "metrics", None)
    return {"target": d.target, "model_url": ctx.upstream, "model_name": ctx.monitor.model_name,
            "task": metrics.task if metrics else None, "classes": metrics.classes if metrics else None,
            "labels": metrics is not None}


def _outlier_tensorflow(monitor) -> bool:
    """A dense VAE trained by `vigil train` is scored with NumPy (vigil_detectors.outlier.dense); a conv VAE
    (tensor instances) and an artifact trained elsewhere (``storageUri``: maybe without those arrays) load
    TensorFlow."""
    o = getattr(monitor.spec.detectors, "outlier", None)
    return o is not None and (monitor.spec.schema_.shape is not None or o.storage_uri is not None)


def _drift_tensorflow(monitor) -> bool:
    """Tabular drift runs on NumPy/SciPy; a UAE preprocessing step runs a TensorFlow encoder."""
    d = getattr(monitor.spec.detectors, "drift", None)
    return d is not None and d.preprocess is not None and d.preprocess.type == "uae"


def _drift_kinds(d) -> tuple[str, ...]:
    """Drift reads request inputs — with ``preprocess: {type: model-output}`` the model's responses instead —
    and, for ``target: outputs | both``, responses and feedback too (the service uses feedback only for label
    drift, when the monitor has a metrics block)."""
    inputs = ("response",) if d.preprocess is not None and d.preprocess.type == "model-output" else ("request",)
    if d.target == "inputs":
        return inputs
    return (*(k for k in inputs if d.target == "both" and k != "response"), "response", "feedback")


def _metrics(ctx: BuildContext, m) -> dict[str, Any]:
    return {"task": ctx.at(m.task, "task"), "classes": ctx.at(m.classes, "classes"),
            "window": ctx.at(m.window, "window"),
            "feedback_ttl_seconds": ctx.at(_spec.parse_duration(m.feedback_ttl), "feedbackTtl"),
            # several replicas: each consumes a share of the JetStream partitions (the settings refuse it over HTTP)
            "consumer_replicas": ctx.at(m.replicas if m.replicas > 1 else None, "replicas")}


def _explainer(ctx: BuildContext, e) -> dict[str, Any]:
    return {"artifact": ctx.artifact(e, against_model=True), "model_url": ctx.upstream, "model_name": ctx.monitor.model_name,
            "threshold": ctx.at(e.threshold, "threshold"), "sample_rate": ctx.at(e.sample_rate, "sampleRate"),
            "type": ctx.at(e.type, "type"), "p_sample": ctx.at(e.p_sample, "pSample"),
            "timeout_seconds": ctx.at(_spec.parse_duration(e.timeout), "timeout"),
            "feature_names": ctx.feature_names, "shape": ctx.shape, "categorical": ctx.categorical()}


def _quality(ctx: BuildContext, q) -> dict[str, Any]:
    # No baseline directory: the service profiles reference at start-up (as drift fits from it).
    baseline = ctx.monitor.spec.baseline.storage_uri
    schema = ctx.monitor.spec.schema_
    if not schema.feature_names:
        raise _spec.SpecError("spec.detectors.quality", "checks named tabular features: it needs schema.featureNames")
    return {"baseline": ctx.at(ctx.path(baseline), "spec.baseline.storageUri") if baseline else None,
            "reference": None if baseline else ctx.path(ctx.reference),
            "feature_names": ctx.feature_names,
            "categorical": ctx.at({str(_spec.categorical_index(k, schema.feature_names)): v
                                   for k, v in schema.categorical.items()}, "spec.schema.categorical"),
            "window_size": ctx.at(q.window.size, "window.size"),
            "max_age_seconds": ctx.at(q.window.max_age_seconds, "window.maxAge"),
            "state_dir": ctx.state_dir()}


def _builtin() -> None:
    from vigil.events import DETECTION_PREFIX as P

    register(ComponentType("logger", 0, "vigil.logger.settings:LoggerSettings", "vigil.logger.app:create_app",
                       _logger, image_role="server"))
    register(ComponentType("model", 1, "vigil.modelserver.settings:ModelServerSettings", "vigil.modelserver.app:create_app",
                       _model, image_role="server", ready_path="/v2/health/ready",
                       tensorflow=lambda m: m.spec.model.format == "tensorflow"))
    register(ComponentType("outlier", 2, "vigil_detectors.outlier.settings:OutlierSettings",
                       "vigil_detectors.outlier.service:create_app", _outlier, spec_block=_spec.OutlierSpec,
                       consumes=("request",), reply_type=f"{P}.outlier", status_key="outliers",
                       status_fields=("rate", "seen", "threshold"), trainable=True, tensorflow=_outlier_tensorflow))
    register(ComponentType("drift", 3, "vigil_detectors.drift.settings:DriftSettings",
                       "vigil_detectors.drift.service:create_app", _drift, spec_block=_spec.DriftSpec,
                       consumes=("request",), reply_type=f"{P}.drift", status_key="drift",
                       status_fields=("detected", "pValue", "featuresDrifted", "lastCheck", "windows", "stale"),
                       trainable=True, tensorflow=_drift_tensorflow, consumes_for=_drift_kinds))
    register(ComponentType("metrics", 4, "vigil_detectors.metrics.settings:MetricsSettings",
                       "vigil_detectors.metrics.service:create_app", _metrics, spec_block=_spec.MetricsSpec,
                       consumes=("response", "feedback"), reply_type=f"{P}.metrics", status_key="metrics"))
    # The explainer gets events only when it explains a sampled share of them.
    register(ComponentType("explainer", 5, "vigil_detectors.explainer.settings:ExplainerSettings",
                       "vigil_detectors.explainer.service:create_app", _explainer, spec_block=_spec.ExplainerSpec,
                       consumes=("request",), subscribes=lambda e: e.sample_rate > 0, reply_type=f"{P}.explanation",
                       status_key="explainer", trainable=True, endpoints=(("explain", "/explain"),)))
    register(ComponentType("quality", 6, "vigil_detectors.quality.settings:QualitySettings",
                       "vigil_detectors.quality.service:create_app", _quality, spec_block=_spec.QualitySpec,
                       consumes=("request",), reply_type=f"{P}.quality", status_key="quality",
                       status_fields=("violations", "featuresViolated", "lastCheck")))


def _plugins(value: str) -> None:
    """``VIGIL_COMPONENTS``: modules to import (``pkg.mod``) or functions to call (``pkg.mod:register``)."""
    for target in filter(None, (t.strip() for t in value.split(","))):
        if ":" in target:
            load_object(target)()
        else:
            importlib.import_module(target)


_builtin()
_plugins(os.environ.get("VIGIL_COMPONENTS", ""))
