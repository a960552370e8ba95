"""From a `ModelMonitor` spec to "which components run, with what settings".

This is the one plan both backends execute: `vigil up` starts each `Component` as a
local process on 127.0.0.1 (`vigil.local`), the operator turns each into a Deployment,
Service and ConfigMap (`vigil_operator.manifests`). Everything that differs between the
two (ports, addresses, where a storage URI can be read, where trained artifacts go) is
asked of a `Placement`; everything else is decided here, once.

Every service reads its settings from environment variables with its own prefix
(``VIGIL_DRIFT_P_VALUE`` …); `Component.env` holds exactly those variables.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional, Protocol

from vigil.spec import ModelMonitor, parse_duration

#: Component names in port order: `vigil up` gives component i the port base + i.
PORT_ORDER = ("logger", "model", "outlier", "drift", "metrics", "explainer")
DEFAULT_BASE_PORT = 8080
DETECTORS = ("outlier", "drift", "metrics", "explainer")

#: Which logger event kinds each detector consumes (the logger filters per sink).
SINK_EVENTS = {
    "outlier": ("request",),
    "drift": ("request",),
    "metrics": ("response", "feedback"),
    "explainer": ("request",),
}


class Placement(Protocol):
    """Where the plan runs: answers the questions a backend decides."""

    def port(self, component: str) -> int: ...

    def url(self, component: str) -> str: ...

    def path(self, uri: str) -> str:
        """Where a component can read the file a storage URI names."""

    def artifact_uri(self, component: str) -> str:
        """Storage URI a detector trained by Vigil is written to (storageUri null)."""

    def state_dir(self, component: str) -> str:
        """A writable directory that survives a restart of the component."""


@dataclass(frozen=True)
class TrainStep:
    """A detector artifact Vigil must fit from reference data before the detector starts."""

    component: str
    reference_uri: str
    output_uri: str
    model_uri: Optional[str] = None  # the explainer needs the model to fit against
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    name: str
    port: int
    env: dict[str, str]
    replicas: int = 1
    resources: dict = field(default_factory=dict)
    image_role: str = "server"  # server | detectors | custom
    image: Optional[str] = None  # a user image (model.image) instead of ours
    storage: tuple[str, ...] = ()  # storage URIs the component reads
    train: Optional[TrainStep] = None
    needs_tensorflow: bool = False

    @property
    def command(self) -> list[str]:
        return ["vigil", "serve", self.name, "--port", str(self.port)]

    def digest(self) -> str:
        """Changes whenever anything that shapes this component's pods changes."""
        doc = {
            "env": self.env, "replicas": self.replicas, "resources": self.resources,
            "image": self.image, "image_role": self.image_role, "storage": self.storage,
            "train": self.train and self.train.__dict__, "port": self.port,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    monitor: ModelMonitor
    components: tuple[Component, ...]

    def get(self, name: str) -> Optional[Component]:
        return next((c for c in self.components if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    @property
    def training(self) -> list[TrainStep]:
        return [c.train for c in self.components if c.train is not None]


def _j(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _env(prefix: str, monitor: ModelMonitor, **values) -> dict[str, str]:
    out = {f"VIGIL_{prefix}_MONITOR": monitor.name, f"VIGIL_{prefix}_NAMESPACE": monitor.namespace}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, dict, tuple)):
            value = _j(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[f"VIGIL_{prefix}_{key.upper()}"] = str(value)
    return out


def build_plan(monitor: ModelMonitor, placement: Placement) -> Plan:
    spec = monitor.spec
    schema = spec.schema_
    features = list(schema.feature_names)
    categorical = {str(i): n for i, n in schema.categorical_indices().items()}
    reference = spec.reference.storage_uri if spec.reference else None
    components: list[Component] = []

    # -- model server (absent when the monitor points at an existing endpoint) --
    if spec.model.endpoint:
        upstream = spec.model.endpoint.rstrip("/")
        model_uri = None
    else:
        model_uri = spec.model.storage_uri
        components.append(Component(
            name="model", port=placement.port("model"),
            env=_env("MODEL", monitor, uri=placement.path(model_uri), format=spec.model.format,
                     name=monitor.model_name),
            replicas=spec.model.replicas, resources=spec.model.resources,
            image_role="custom" if spec.model.image else "server", image=spec.model.image,
            storage=(model_uri,), needs_tensorflow=spec.model.format == "tensorflow",
        ))
        upstream = placement.url("model")

    def artifact(name: str, block) -> tuple[str, Optional[TrainStep]]:
        if block.storage_uri:
            return block.storage_uri, None
        out = placement.artifact_uri(name)
        return out, TrainStep(name, reference, out, model_uri=model_uri if name == "explainer" else None,
                              options=block.model_dump(by_alias=True, exclude={"resources", "replicas", "storage_uri"}))

    d = spec.detectors
    if d.outlier:
        uri, train = artifact("outlier", d.outlier)
        components.append(Component(
            name="outlier", port=placement.port("outlier"),
            env=_env("OUTLIER", monitor, artifact=placement.path(uri), feature_names=features,
                     max_batch_size=d.outlier.max_batch_size, max_batch_delay_ms=d.outlier.max_batch_delay_ms),
            replicas=d.outlier.replicas, resources=d.outlier.resources, image_role="detectors",
            storage=(uri,), train=train, needs_tensorflow=True,
        ))
    if d.drift:
        w = d.drift.window
        # A drift detector with no artifact is fitted from reference at start-up (KS keeps x_ref).
        storage = (d.drift.storage_uri,) if d.drift.storage_uri else (reference,)
        components.append(Component(
            name="drift", port=placement.port("drift"),
            env=_env("DRIFT", monitor,
                     artifact=placement.path(d.drift.storage_uri) if d.drift.storage_uri else None,
                     reference=None if d.drift.storage_uri else placement.path(reference),
                     feature_names=features, categorical=categorical, p_value=d.drift.p_value,
                     correction=d.drift.correction, window_size=w.size, window_mode=w.mode,
                     window_step=w.step or max(1, w.size // 10), max_age_seconds=w.max_age_seconds,
                     state_dir=placement.state_dir("drift")),
            replicas=d.drift.replicas, resources=d.drift.resources, image_role="detectors", storage=storage,
        ))
    if d.metrics:
        components.append(Component(
            name="metrics", port=placement.port("metrics"),
            env=_env("METRICS", monitor, task=d.metrics.task, classes=d.metrics.classes, window=d.metrics.window,
                     feedback_ttl_seconds=parse_duration(d.metrics.feedback_ttl)),
            replicas=d.metrics.replicas, resources=d.metrics.resources, image_role="detectors",
        ))
    if d.explainer:
        uri, train = artifact("explainer", d.explainer)
        components.append(Component(
            name="explainer", port=placement.port("explainer"),
            env=_env("EXPLAINER", monitor, artifact=placement.path(uri), model_url=upstream,
                     model_name=monitor.model_name, threshold=d.explainer.threshold,
                     sample_rate=d.explainer.sample_rate, feature_names=features, categorical=categorical),
            replicas=d.explainer.replicas, resources=d.explainer.resources, image_role="detectors",
            storage=(uri,), train=train,
        ))

    sinks = [{"name": c.name, "url": placement.url(c.name), "types": list(SINK_EVENTS[c.name])}
             for c in components if c.name in SINK_EVENTS
             and not (c.name == "explainer" and d.explainer.sample_rate == 0.0)]
    lg = spec.logger
    components.insert(0, Component(
        name="logger", port=placement.port("logger"),
        env=_env("LOGGER", monitor, upstream=upstream, model_name=monitor.model_name, mode=lg.mode,
                 sample_rate=lg.sample_rate, queue_size=lg.queue_size, sinks=sinks),
        replicas=lg.replicas, resources=lg.resources, image_role="server",
    ))
    return Plan(monitor=monitor, components=tuple(components))
