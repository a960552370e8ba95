"""From a `ModelMonitor` spec to "which components run, with what settings".

This is the one plan both backends execute: `vigil up` starts each `Component` as a
local process on 127.0.0.1 (`vigil.local`), the operator turns each into a Deployment,
Service and ConfigMap (`vigil_operator.manifests`). Everything that differs between the
two (ports, addresses, where a storage URI can be read, where trained artifacts go) is
asked of a `Placement`; everything else is decided here, once.

Which components exist is the registry's (`vigil.components`); each row's ``build``
maps the spec onto its settings fields. The plan constructs the component's own
settings class from those values — so a value the service would reject is a `SpecError`
naming the spec field, here, before anything starts — and renders the environment the
service reads that same class from (``VIGIL_DRIFT_P_VALUE`` …) with `settings_env`.
`train_argv` is the one ``vigil train`` command line of a `TrainStep`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Optional, Protocol

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from vigil import components as registry
from vigil.spec import POD_FIELDS, ModelMonitor, SpecError, categorical_index

DEFAULT_BASE_PORT = 8080


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

    def write_uri(self, uri: str) -> str:
        """Where a component writes the location a storage URI names (capture): a local path, or a
        remote URL the component writes itself (s3://, gs://)."""

    def transport_url(self) -> Optional[str]:
        """The NATS server of a JetStream monitor that names none (vigil up's own, the chart's)."""


@dataclass(frozen=True)
class TrainStep:
    """A detector artifact Vigil must fit from reference data before the detector starts:
    everything ``vigil train`` needs (`train_argv`), with storage still as URIs."""

    component: str
    reference_uri: str
    output_uri: str
    model_uri: Optional[str] = None  # the explainer fits against the model: a file …
    model_endpoint: Optional[str] = None  # … or a running V2 server (endpoint monitors)
    model_format: Optional[str] = None
    model_name: Optional[str] = None
    options: dict = field(default_factory=dict)  # the detector's spec block (camelCase)
    feature_names: tuple[str, ...] = ()
    categorical: dict = field(default_factory=dict)  # the schema's block, as written
    shape: Optional[tuple[int, ...]] = None  # tensor instances: spec.schema.shape (DESIGN §8)


def train_argv(step: TrainStep, path: Callable[[str], str]) -> list[str]:
    """The arguments of ``vigil train`` for one step (after ``vigil``); `path` maps a storage URI
    to where the trainer reads or writes it (a local path, a path in the Job's pod)."""
    argv = ["train", "--component", step.component, "--reference", path(step.reference_uri),
            "--output", path(step.output_uri), "--options", json.dumps(step.options, sort_keys=True, default=str),
            "--feature-names", json.dumps(list(step.feature_names)),
            "--categorical", json.dumps(step.categorical, sort_keys=True)]
    if step.shape is not None:
        argv += ["--shape", json.dumps(list(step.shape))]
    model = path(step.model_uri) if step.model_uri else step.model_endpoint
    if model:
        argv += ["--model", model, "--model-format", step.model_format or "sklearn"]
        if step.model_name:
            argv += ["--model-name", step.model_name]
    return argv


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
    writes: tuple[str, ...] = ()  # storage URIs the component writes (the logger's capture)
    train: Optional[TrainStep] = None
    needs_tensorflow: bool = False
    token_secret: Optional[tuple[str, str]] = None  # spec.security.tokenSecret (name, key): VIGIL_TOKEN in pods
    settings: Any = field(default=None, compare=False, repr=False)  # the service's settings object

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
        if self.token_secret:  # only when set, so digests of monitors without auth stay as they were
            doc["tokenSecret"] = list(self.token_secret)
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


def endpoints(plan: Plan, url: Callable[[str], str]) -> dict[str, str]:
    """What users call (``.status.endpoints``): inference and feedback on the logger, plus each
    component's own endpoints (the explainer's /explain); `url` is the placement's."""
    logger = url("logger")
    out = {"inference": f"{logger}/v2/models/{plan.monitor.model_name}/infer", "feedback": f"{logger}/feedback"}
    for c in plan.components:
        for key, path in registry.get(c.name).endpoints:
            out[key] = url(c.name) + path
    return out


# ----------------------------------------------------------------------------- settings <-> env

@cache
def _from_values(cls: type) -> type:
    """`cls` reading only the values it is given (no environment, no .env): what the plan builds."""
    def sources(_cls, settings_cls, init_settings, **_):
        return (init_settings,)

    return type(cls.__name__, (cls,), {"settings_customise_sources": classmethod(sources), "__module__": cls.__module__})


def build_settings(cls: type[BaseSettings], values: dict[str, Any]) -> BaseSettings:
    """`cls` from exactly `values` (None means: the class's default). Raises ValidationError."""
    return _from_values(cls)(**{k: v for k, v in values.items() if v is not None})


def settings_env(settings: BaseSettings) -> dict[str, str]:
    """The environment that makes the service read `settings` back: ``{prefix}{FIELD}`` for every
    field the plan set, JSON for lists and maps (as pydantic-settings parses them)."""
    prefix = settings.model_config["env_prefix"]
    out = {}
    for key, value in settings.model_dump(mode="json", include=settings.model_fields_set).items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            value = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[f"{prefix}{key.upper()}"] = str(value)
    return out


# ----------------------------------------------------------------------------- building

class At:
    """A settings value with the spec field it came from (see `BuildContext.at`)."""

    __slots__ = ("value", "path", "keys")

    def __init__(self, value: Any, path: str, keys: Optional[dict[str, str]] = None):
        self.value, self.path, self.keys = value, path, keys or {}


class BuildContext:
    """What a registry row's ``build(ctx, block)`` may ask while it maps the spec onto settings.

    Every storage URI it asks a `path` for becomes storage the component reads; `artifact`
    also schedules training when the block has no storageUri; `at` names the spec field of
    a value (relative to the block, or absolute from ``spec.``)."""

    def __init__(self, monitor: ModelMonitor, placement: Placement, name: str, block_path: str,
                 upstream: str, model_uri: Optional[str], others: list[Component]):
        self.monitor, self.placement, self.name, self.block_path = monitor, placement, name, block_path
        self.upstream, self.model_uri, self._others = upstream, model_uri, others
        self.storage: list[str] = []
        self.written: list[str] = []
        self.train: Optional[TrainStep] = None

    @property
    def reference(self) -> Optional[str]:
        return self.monitor.spec.reference.storage_uri if self.monitor.spec.reference else None

    @property
    def feature_names(self) -> Optional[list[str]]:
        """The schema's feature names (None for a tensor schema)."""
        names = self.monitor.spec.schema_.feature_names
        return None if names is None else list(names)

    @property
    def shape(self) -> Optional[list[int]]:
        """The shape of one instance of a tensor schema (None for a tabular one)."""
        shape = self.monitor.spec.schema_.shape
        return None if shape is None else list(shape)

    def at(self, value: Any, path: str, keys: Optional[dict[str, str]] = None) -> At:
        return At(value, path if path.startswith("spec") else f"{self.block_path}.{path}", keys)

    def path(self, uri: Optional[str]) -> Optional[str]:
        """Where the component reads `uri` (None stays None); the URI becomes storage it reads."""
        return None if uri is None else self.placement.path(self._reads(uri))

    def writes(self, uri: str) -> str:
        """Where the component writes `uri` (`Placement.write_uri`); the URI becomes storage it writes."""
        self.written.append(uri)
        return self.placement.write_uri(uri)

    def _reads(self, uri: str) -> str:
        self.storage.append(uri)
        return uri

    def categorical(self) -> At:
        """The schema's categorical block as ``{"column index": n categories | [values]}`` (the services'
        form: a value list stays a list, so every component maps the same strings to the same codes)."""
        schema = self.monitor.spec.schema_
        cats = {str(categorical_index(k, schema.names)): v for k, v in schema.categorical.items()}
        names = {str(categorical_index(k, schema.names)): k for k in schema.categorical}
        return At(cats, "spec.schema.categorical",
                  {key: f"spec.schema.categorical.{name}" for key, name in names.items()})

    def state_dir(self) -> str:
        return self.placement.state_dir(self.name)

    def transport(self) -> Optional[At]:
        """``spec.transport`` as the services read it (`vigil.transport.TransportConfig`); None for HTTP, so
        HTTP monitors render exactly as before the transport existed."""
        t = self.monitor.spec.transport
        if t.type == "http":
            return None
        url = t.url or self.placement.transport_url()
        if not url:
            raise SpecError("spec.transport.url", "jetstream needs a NATS url here (none given, and this backend "
                                                  "runs no NATS of its own)")
        return At({"type": t.type, "url": url, "partitions": t.partitions, "max_bytes": t.max_bytes_value},
                  "spec.transport", {k: f"spec.transport.{k}" for k in ("type", "url", "partitions")}
                  | {"max_bytes": "spec.transport.maxBytes"})

    def artifact(self, block: Any, against_model: bool = False) -> str:
        """Where the component reads its artifact: the block's storageUri, else one Vigil trains
        (`against_model`: the trainer calls the model, a file or the monitored endpoint)."""
        if block.storage_uri:
            return self.placement.path(self._reads(block.storage_uri))
        out = self.placement.artifact_uri(self.name)
        spec = self.monitor.spec
        assert self.reference is not None, "the spec model requires reference to train"
        model: dict[str, Any] = {}
        if against_model:
            model = dict(model_uri=self.model_uri, model_format=spec.model.format, model_name=self.monitor.model_name,
                         model_endpoint=spec.model.endpoint.rstrip("/") if spec.model.endpoint else None)
        self.train = TrainStep(
            self.name, self.reference, out, **model,
            options=block.model_dump(by_alias=True, exclude=POD_FIELDS),
            feature_names=tuple(spec.schema_.names), categorical=dict(spec.schema_.categorical),
            shape=spec.schema_.instance_shape)
        return self.placement.path(self._reads(out))

    def sinks(self) -> list[dict]:
        """The logger's sinks: every planned detector that consumes events and wants them."""
        d = self.monitor.spec.detectors
        return [{"name": c.name, "url": self.placement.url(c.name),
                 "types": list(registry.get(c.name).kinds(getattr(d, c.name, None))),
                 # a partitioned detector: the logger creates one consumer per replica (vigil.transport.jetstream)
                 **({"consumer_replicas": n} if (n := getattr(c.settings, "consumer_replicas", None)) else {})}
                for c in self._others if registry.get(c.name).consumes
                and registry.get(c.name).subscribes(getattr(d, c.name))]


def _spec_error(exc: ValidationError, values: dict[str, Any], block_path: str, component: str) -> SpecError:
    err = exc.errors()[0]
    loc = tuple(str(x) for x in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    origin = values.get(loc[0]) if loc else None
    if isinstance(origin, At):
        path = origin.keys.get(loc[1], origin.path) if len(loc) > 1 else origin.path
        return SpecError(path, f"{msg} (the {component} service would refuse to start)")
    return SpecError(block_path, f"{component} setting {'.'.join(loc) or '(all)'}: {msg}")


def _component(row: registry.ComponentType, monitor: ModelMonitor, placement: Placement, block: Any,
               block_path: str, upstream: str, model_uri: Optional[str], others: list[Component]) -> Component:
    ctx = BuildContext(monitor, placement, row.name, block_path, upstream, model_uri, others)
    values = {"monitor": monitor.name, "namespace": monitor.namespace, **row.build(ctx, block)}
    if "transport" in row.settings_class().model_fields:
        values["transport"] = ctx.transport()
    plain = {k: v.value if isinstance(v, At) else v for k, v in values.items()}
    try:
        settings = build_settings(row.settings_class(), plain)
    except ValidationError as exc:
        raise _spec_error(exc, values, block_path, row.name) from None
    return Component(
        name=row.name, port=placement.port(row.name), env=settings_env(settings),
        replicas=getattr(block, "replicas", 1), resources=getattr(block, "resources", {}),
        image_role=row.image_role, storage=tuple(dict.fromkeys(ctx.storage)), train=ctx.train,
        writes=tuple(dict.fromkeys(ctx.written)),
        needs_tensorflow=row.needs_tensorflow(monitor), settings=settings,
        token_secret=(ref.name, ref.key) if (ref := monitor.spec.security.token_secret) else None)


def build_plan(monitor: ModelMonitor, placement: Placement) -> Plan:
    """Every component the spec asks for, in port order, with its settings built and checked."""
    spec = monitor.spec
    components: list[Component] = []
    model_uri = None if spec.model.endpoint else spec.model.storage_uri
    upstream = spec.model.endpoint.rstrip("/") if spec.model.endpoint else placement.url("model")

    def add(name: str, block: Any, block_path: str) -> Component:
        c = _component(registry.get(name), monitor, placement, block, block_path, upstream, model_uri, components)
        components.append(c)
        return c

    if not spec.model.endpoint:  # absent when the monitor points at an existing endpoint
        model = add("model", spec.model, "spec.model")
        if spec.model.image:
            components[-1] = dataclasses.replace(model, image_role="custom", image=spec.model.image)
    for row in registry.detectors():
        block = getattr(spec.detectors, row.name, None)
        if block is not None:
            add(row.name, block, f"spec.detectors.{row.name}")
    add("logger", spec.logger, "spec.logger")  # last: its sinks are the detectors above
    order = {r.name: r.port_offset for r in registry.rows()}
    return Plan(monitor=monitor, components=tuple(sorted(components, key=lambda c: order[c.name])))
