"""The `ModelMonitor` resource as typed Python (DESIGN.md §2).

One pydantic model per block of the spec. Field names are the snake_case of the
resource's camelCase keys; `load_monitor` reads a YAML/JSON file or dict and raises
`SpecError` naming the bad field (``spec.detectors.drift.pValue``) so the CLI and the
operator can show it to users. The CRD schema in `crds/` is checked against these
models by a test.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from vigil.capture.settings import CaptureSettings
from vigil.errors import VigilError
from vigil.logger.settings import LoggerSettings
from vigil.modelserver.settings import ModelServerSettings
from vigil.transport import DEFAULT_MAX_BYTES, TransportConfig
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.explainer.settings import ExplainerSettings
from vigil_detectors.metrics.settings import MetricsSettings
from vigil_detectors.outlier.settings import OutlierSettings
from vigil_detectors.quality.settings import QualitySettings

API_GROUP = "vigil.dev"
API_VERSION = "v1alpha1"
KIND = "ModelMonitor"
STORAGE_SCHEMES = ("pvc", "file", "s3", "gs", "https", "http")


class SpecError(VigilError, ValueError):
    """A ModelMonitor that does not validate. `field` is the dotted camelCase path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class _Block(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


#: `parse_duration`'s grammar; the CRD gives it as the pattern of every `Duration` field.
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?)\s*(ms|s|m|h)?\s*$"


def parse_duration(value: Union[str, int, float]) -> float:
    """'500ms', '30s', '10m', '1h' (or plain seconds) -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(DURATION_PATTERN, str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 10m, 1h)")
    number, unit = float(m.group(1)), m.group(3) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


_BYTE_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_bytes(value: Union[str, int]) -> int:
    """A size as a Kubernetes quantity ('64Mi', '1Gi', '500M') or plain bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*", str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 64Mi, 1Gi or a number of bytes)")
    return int(m.group(1)) * _BYTE_UNITS[m.group(2) or ""]


def quantity(n: int) -> str:
    """Bytes as the largest binary quantity that divides them (1073741824 -> '1Gi'), the inverse of `parse_bytes`."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if n >= _BYTE_UNITS[unit] and n % _BYTE_UNITS[unit] == 0:
            return f"{n // _BYTE_UNITS[unit]}{unit}"
    return str(n)


def inherit(settings: type[BaseModel], name: str) -> Any:
    """A spec field that feeds ``settings.<name>`` one to one: the settings class is the one home
    of its type constraints, default and description; the spec only names it."""
    info: FieldInfo = copy.deepcopy(settings.model_fields[name])
    return info


def seconds(value: float) -> str:
    """A settings default in seconds as the spec's duration string (600.0 -> '10m')."""
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def _duration(v: str) -> str:
    parse_duration(v)
    return v


#: A duration of the spec ('30s', '10m', '1h'): checked by `parse_duration`, given its pattern in the CRD.
Duration = Annotated[str, AfterValidator(_duration), Field(json_schema_extra={"pattern": DURATION_PATTERN})]


def duration_of(settings: type[BaseModel], name: str, description: Optional[str] = None) -> Any:
    """A `Duration` field that feeds ``settings.<name>`` (seconds): its default is that field's, as a duration."""
    return Field(seconds(settings.model_fields[name].default), description=description)


def categorical_index(key: Union[str, int], feature_names: Sequence[str]) -> int:
    """A categorical block's key (a feature name, or a column index as int or str) -> column index."""
    names = list(feature_names or [])
    if isinstance(key, str) and key in names:
        return names.index(key)
    try:
        idx = int(key)
    except (TypeError, ValueError):
        raise ValueError(f"categorical feature {key!r} is not one of the feature names {names}") from None
    if names and not 0 <= idx < len(names):
        raise ValueError(f"categorical feature index {idx} is out of range for {len(names)} features")
    return idx


def categorical_indices(categorical: Optional[Mapping[Any, Any]], feature_names: Sequence[str]
                        ) -> dict[int, Optional[int]]:
    """The schema's ``{feature: n categories | [values] | None}`` as ``{column index: n | None}``:
    the one converter every component uses."""
    out: dict[int, Optional[int]] = {}
    for key, cats in (categorical or {}).items():
        n = len(cats) if isinstance(cats, (list, tuple)) else (None if cats is None else int(cats))
        out[categorical_index(key, feature_names)] = n
    return out


def _check_uri(uri: Optional[str]) -> Optional[str]:
    if uri is None:
        return uri
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}; use one of {', '.join(STORAGE_SCHEMES)}")
    return uri


Resources = dict[str, Any]


class LocalObjectReference(_Block):
    name: str = Field(min_length=1)


class PodSpec(_Block):
    """Where and how a component's pods run (DESIGN §12): ``spec.pod`` for all components, a
    component's own ``pod`` block over it (a field replaces, maps merge key by key)."""

    node_selector: Optional[dict[str, str]] = None
    tolerations: Optional[list[dict[str, Any]]] = None
    affinity: Optional[dict[str, Any]] = None
    topology_spread_constraints: Optional[list[dict[str, Any]]] = None
    priority_class_name: Optional[str] = None
    annotations: Optional[dict[str, str]] = None
    labels: Optional[dict[str, str]] = None
    image_pull_secrets: Optional[list[LocalObjectReference]] = None
    service_account_annotations: Optional[dict[str, str]] = None


class AutoscalingSpec(_Block):
    """A HorizontalPodAutoscaler on CPU for a component that may scale (logger, model, outlier)."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(ge=1)
    target_cpu_utilization_percentage: int = Field(80, ge=1, le=100, alias="targetCPUUtilizationPercentage")

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class StorageSpec(_Block):
    """Where Vigil's pods read and write storage: the Secret whose keys become the environment of
    every init container and training Job (AWS_ACCESS_KEY_ID, ...), and where trained artifacts go
    (s3://, gs:// or pvc://CLAIM/path; default: a claim of the monitor's own)."""

    secret_name: Optional[str] = Field(None, min_length=1)
    artifacts_uri: Optional[str] = Field(None, min_length=1, pattern=r"^(pvc|s3|gs)://.+")


#: Fields of a component block that shape its pods, not its service (kept out of training options).
POD_FIELDS = {"resources", "replicas", "storage_uri", "pod", "autoscaling"}


class ModelSpec(_Block):
    storage_uri: Optional[str] = None
    endpoint: Optional[str] = None
    format: Literal["sklearn", "xgboost", "tensorflow"] = inherit(ModelServerSettings, "format")
    name: Optional[str] = None
    image: Optional[str] = None
    replicas: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=dict)
    pod: Optional[PodSpec] = None
    autoscaling: Optional[AutoscalingSpec] = None

    _uri = field_validator("storage_uri")(lambda cls, v: _check_uri(v))

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.storage_uri) == bool(self.endpoint):
            raise ValueError("set exactly one of model.storageUri or model.endpoint")
        return self


class SchemaSpec(_Block):
    """What one instance looks like: named columns (``featureNames``, tabular) or one tensor (``shape``,
    DESIGN §8: images, embeddings) — exactly one of the two."""

    feature_names: Optional[list[str]] = Field(None, min_length=1)
    shape: Optional[list[Annotated[int, Field(ge=1)]]] = Field(None, min_length=1, max_length=8, description=(
        "The shape of ONE instance for tensor inputs (images, embeddings), e.g. [32, 32, 3]; requests carry "
        "[n, *shape] (V2) or n nested lists (V1), reference data is a .npy of shape [n, *shape]. "
        "Exclusive with featureNames."))
    categorical: dict[str, Union[int, list[Union[str, int, float]]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_categoricals(self):
        if (self.feature_names is None) == (self.shape is None):
            raise ValueError("set exactly one of schema.featureNames (tabular) or schema.shape (tensors)")
        if self.shape is not None:
            if self.categorical:
                raise ValueError("categorical needs featureNames; a shape (tensor) schema has no named features")
            return self
        names = self.feature_names or []
        unknown = sorted(set(self.categorical) - set(names))
        if unknown:
            raise ValueError(f"categorical names features not in featureNames: {unknown}")
        if len(set(names)) != len(names):
            raise ValueError("featureNames must be unique")
        return self

    @property
    def names(self) -> list[str]:
        """The feature names ([] for a tensor schema)."""
        return list(self.feature_names or [])

    @property
    def instance_shape(self) -> Optional[tuple[int, ...]]:
        """The shape of one instance of a tensor schema (None for a tabular one)."""
        return tuple(self.shape) if self.shape is not None else None

    def categorical_indices(self) -> dict[int, Optional[int]]:
        """Feature index -> number of categories (a value list counts its values)."""
        return categorical_indices(self.categorical, self.names)


class ReferenceSpec(_Block):
    storage_uri: str
    _uri = field_validator("storage_uri")(lambda cls, v: _check_uri(v))


class SecretKeyRef(_Block):
    """A key of a Kubernetes Secret in the monitor's namespace."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class SecuritySpec(_Block):
    """``spec.security``: the optional shared bearer token (DESIGN §11, `vigil.auth`). The operator
    puts the Secret's key into every pod as ``VIGIL_TOKEN``; locally `vigil up` takes ``VIGIL_TOKEN``
    or ``--token-file`` instead."""

    token_secret: Optional[SecretKeyRef] = None


CAPTURE_SCHEMES = ("file", "pvc", "s3", "gs")


class CaptureSpec(_Block):
    """``spec.logger.capture`` (DESIGN §13): rotated files of every sampled request, response and
    feedback, ``capture-<UTC start time>-<seq>.jsonl|.parquet``, one record per event."""

    storage_uri: str = Field(min_length=1, description=(
        "Directory the capture files are written to: file:///abs/path (or a path, locally), pvc://CLAIM/path "
        "(in Kubernetes: the claim is mounted writable in the logger pod) or s3://BUCKET/prefix (the storage "
        "Secret's credentials)."))
    sample_rate: float = inherit(CaptureSettings, "sample_rate")
    format: Literal["jsonl", "parquet"] = inherit(CaptureSettings, "format")
    rotate: Duration = duration_of(CaptureSettings, "rotate_seconds",
                                   "How long one file is written before the next starts (1s to 24h).")

    @field_validator("storage_uri")
    @classmethod
    def _where(cls, v: str) -> str:
        if "://" in v and v.split("://", 1)[0] not in CAPTURE_SCHEMES:
            raise ValueError(f"capture goes to {', '.join(s + '://' for s in CAPTURE_SCHEMES)} "
                             f"(or a local path), not {v.split('://', 1)[0]}://")
        return v


class LoggerSpec(_Block):
    mode: Literal["all", "request", "response"] = inherit(LoggerSettings, "mode")
    sample_rate: float = inherit(LoggerSettings, "sample_rate")
    queue_size: int = inherit(LoggerSettings, "queue_size")
    queue_bytes: Union[int, str] = Field(LoggerSettings.model_fields["queue_bytes"].default, description=(
        "Bound of each sink's queue in bytes (a quantity such as 64Mi, or bytes); events beyond it are dropped "
        "and counted (reason queue_bytes)."))
    upstream_timeout: Duration = duration_of(LoggerSettings, "upstream_timeout_seconds",
                                             "How long the logger waits for the model server's answer (then 504).")
    capture: Optional[CaptureSpec] = None
    replicas: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=dict)
    pod: Optional[PodSpec] = None
    autoscaling: Optional[AutoscalingSpec] = None

    @field_validator("queue_bytes")
    @classmethod
    def _size(cls, v):
        parse_bytes(v)
        return v


class TransportSpec(_Block):
    """``spec.transport`` (DESIGN §13): HTTP from the logger to each detector (default), or the monitor's
    NATS JetStream stream with every detector a durable pull consumer."""

    type: Literal["http", "jetstream"] = inherit(TransportConfig, "type")
    url: Optional[str] = inherit(TransportConfig, "url")
    partitions: int = inherit(TransportConfig, "partitions")
    max_bytes: Union[int, str] = Field(quantity(DEFAULT_MAX_BYTES),
                                       description=TransportConfig.model_fields["max_bytes"].description)

    @field_validator("max_bytes")
    @classmethod
    def _size(cls, v):
        if parse_bytes(v) < 1024:
            raise ValueError("maxBytes must be at least 1Ki")
        return v

    @property
    def max_bytes_value(self) -> int:
        return parse_bytes(self.max_bytes)


class _Detector(_Block):
    storage_uri: Optional[str] = None
    replicas: int = Field(1, ge=0)
    resources: Resources = Field(default_factory=dict)
    pod: Optional[PodSpec] = None
    _uri = field_validator("storage_uri")(lambda cls, v: _check_uri(v))


#: The base of every ``spec.detectors.<name>`` block (storageUri, replicas, resources).
DetectorBlock = _Detector


class OutlierSpec(_Detector):
    type: Literal["vae"] = "vae"
    threshold_percentile: float = Field(95.0, gt=0.0, lt=100.0)
    max_batch_size: int = inherit(OutlierSettings, "max_batch_size")
    max_batch_delay_ms: float = inherit(OutlierSettings, "max_batch_delay_ms")
    latent_dim: int = Field(2, ge=1)
    epochs: int = Field(30, ge=1)
    autoscaling: Optional[AutoscalingSpec] = None


class _Window(_Block):
    """A detector's window: ``size`` instances, or what arrived within ``maxAge`` (a duration). A
    subclass takes both defaults from its service's settings (and adds its own fields)."""

    size: int
    max_age: Duration

    @property
    def max_age_seconds(self) -> float:
        return parse_duration(self.max_age)


class WindowSpec(_Window):
    """The drift window: `size` instances per test (tumbling, or sliding by `step`), or what arrived within `maxAge`."""

    size: int = inherit(DriftSettings, "window_size")
    max_age: Duration = duration_of(DriftSettings, "max_age_seconds")
    mode: Literal["tumbling", "sliding"] = inherit(DriftSettings, "window_mode")
    step: Optional[int] = inherit(DriftSettings, "window_step")


class PreprocessSpec(_Block):
    """``spec.detectors.drift.preprocess``: map each tensor instance to a small vector before the drift test
    (DESIGN §8, `vigil_detectors.drift.preprocess`). ``uae``: alibi-detect's untrained autoencoder with
    fixed weights drawn from ``seed`` (built and saved by ``vigil train``), KS per encoded dimension;
    ``model-output``: black-box shift detection on the model's class probabilities from response events."""

    type: Literal["uae", "model-output"] = Field(description=(
        "uae: an untrained alibi-detect autoencoder (UAE) with seeded weights; model-output: KS per class on the "
        "model's softmax outputs (predict_proba) of response events, against those of the reference."))
    encoding_dim: int = Field(32, ge=1, le=1024, description="Dimensions of the UAE's encoding (KS tests, corrected).")
    seed: int = Field(0, ge=0, description="Seed of the UAE's random weights (saved with the detector).")


class DriftSpec(_Detector):
    replicas: int = Field(1, ge=0, le=1, description="at most 1: one pod holds the window (its state claim)")
    type: str = inherit(DriftSettings, "statistic")
    statistics: dict[str, str] = inherit(DriftSettings, "statistics")
    p_value: float = inherit(DriftSettings, "p_value")
    correction: Literal["bonferroni", "fdr"] = inherit(DriftSettings, "correction")
    window: WindowSpec = Field(default_factory=WindowSpec)
    target: Literal["inputs", "outputs", "both"] = inherit(DriftSettings, "target")
    preprocess: Optional[PreprocessSpec] = None


class MetricsSpec(_Detector):
    replicas: int = Field(1, ge=0, le=64, description=(
        "1 over HTTP (one pod joins responses with their feedback); over JetStream up to spec.transport.partitions, "
        "each replica (a StatefulSet pod) joining the inferences of its share of the partitions"))
    task: Literal["classification", "regression"] = inherit(MetricsSettings, "task")
    classes: Optional[list[Union[str, int]]] = inherit(MetricsSettings, "classes")
    window: int = inherit(MetricsSettings, "window")
    feedback_ttl: Duration = duration_of(MetricsSettings, "feedback_ttl_seconds")


class ExplainerSpec(_Detector):
    type: Literal["anchor-tabular", "anchor-image"] = inherit(ExplainerSettings, "type")
    threshold: float = inherit(ExplainerSettings, "threshold")
    sample_rate: float = inherit(ExplainerSettings, "sample_rate")
    timeout: Duration = duration_of(ExplainerSettings, "timeout_seconds", (
        "The longest one explanation may take (e.g. 30s, 2m); past it POST /explain answers 504 with reason timeout."))
    p_sample: float = inherit(ExplainerSettings, "p_sample")
    segmentation_fn: Literal["slic", "felzenszwalb", "quickshift"] = Field("slic", description=(
        "anchor-image: the scikit-image segmentation that cuts the image into superpixels."))
    segmentation_kwargs: dict[str, Union[int, float, str, bool]] = Field(default_factory=dict, description=(
        "anchor-image: keyword arguments of the segmentation (empty: alibi's defaults, for slic "
        "n_segments 10, compactness 10, sigma 0.5)."))

    @model_validator(mode="after")
    def _image_options(self):
        if self.type != "anchor-image" and (self.segmentation_kwargs or self.segmentation_fn != "slic"):
            raise ValueError("segmentationFn and segmentationKwargs are options of type anchor-image")
        return self


class QualityWindowSpec(_Window):
    """The quality window: `size` instances per report, or what arrived within `maxAge`."""

    size: int = inherit(QualitySettings, "window_size")
    max_age: Duration = duration_of(QualitySettings, "max_age_seconds")


class QualitySpec(_Detector):
    """Data quality (DESIGN §9): every instance checked against the baseline's constraints."""

    replicas: int = Field(1, ge=0, le=1, description="at most 1: one pod holds the window and its history")
    window: QualityWindowSpec = Field(default_factory=QualityWindowSpec)


class BaselineSpec(_Block):
    """``spec.baseline``: a directory holding statistics.json and constraints.json (`vigil baseline`
    writes them; edit constraints.json to loosen or turn off checks). Null: profiled from reference."""

    storage_uri: Optional[str] = None
    _uri = field_validator("storage_uri")(lambda cls, v: _check_uri(v))


class _NoDetectors(_Block):
    """``spec.detectors``: one optional block per registered detector (`vigil.components`);
    `set_detector_blocks` rebuilds it when a detector is registered."""


DetectorsSpec: type[_Block] = _NoDetectors


class PrometheusSpec(_Block):
    service_monitor: bool = False
    rules: bool = False


class ModelMonitorSpec(_Block):
    model: ModelSpec
    schema_: SchemaSpec = Field(alias="schema")
    reference: Optional[ReferenceSpec] = None
    baseline: BaselineSpec = Field(default_factory=BaselineSpec)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    logger: LoggerSpec = Field(default_factory=LoggerSpec)
    transport: TransportSpec = Field(default_factory=TransportSpec)
    detectors: Any = Field(default_factory=DetectorsSpec)  # the registry's DetectorsSpec (set_detector_blocks)
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)
    pod: Optional[PodSpec] = None
    storage: Optional[StorageSpec] = None

    @model_validator(mode="after")
    def _reference_when_training(self):
        from vigil import components

        d = self.detectors
        needs = [n for n in components.trainable()
                 if getattr(d, n, None) is not None and getattr(getattr(d, n), "storage_uri", None) is None]
        if needs and self.reference is None:
            raise ValueError(f"reference.storageUri is required to train {', '.join(needs)} (or give each a storageUri)")
        if getattr(d, "quality", None) is not None and self.baseline.storage_uri is None and self.reference is None:
            raise ValueError("reference.storageUri is required to profile the quality baseline "
                             "(or set baseline.storageUri)")
        metrics = getattr(d, "metrics", None)
        if metrics is not None and metrics.replicas > 1:  # DESIGN §13: a partition share per replica
            if self.transport.type != "jetstream":
                raise ValueError("detectors.metrics.replicas above 1 needs transport.type jetstream (each replica "
                                 "consumes a share of the partitions; over HTTP one pod joins every feedback)")
            if metrics.replicas > self.transport.partitions:
                raise ValueError(f"detectors.metrics.replicas ({metrics.replicas}) exceeds transport.partitions "
                                 f"({self.transport.partitions}): a replica would have no partition")
        return self

    @model_validator(mode="after")
    def _explainer_fits_the_schema(self):
        explainer = getattr(self.detectors, "explainer", None)
        if explainer is None:
            return self
        shape = self.schema_.shape
        if explainer.type == "anchor-image" and (shape is None or len(shape) not in (2, 3)):
            raise ValueError(IMAGE_EXPLAINER_SHAPE)
        if explainer.type == "anchor-tabular" and shape is not None:
            raise ValueError(TABULAR_EXPLAINER_SHAPE)
        return self


#: The explainer/schema rule (`ModelMonitorSpec`), also the CRD's CEL messages (`vigil.crd`).
IMAGE_EXPLAINER_SHAPE = "explainer type anchor-image explains images: it needs schema.shape [H, W] or [H, W, C]"
TABULAR_EXPLAINER_SHAPE = ("explainer type anchor-tabular explains rows of featureNames: a schema.shape monitor "
                           "needs type anchor-image")


def set_detector_blocks(blocks: Mapping[str, type[BaseModel]]) -> type[_Block]:
    """Make ``spec.detectors`` accept exactly these blocks (name -> block model); rebuilds the models."""
    global DetectorsSpec
    fields: dict[str, Any] = {name: (Optional[model], None) for name, model in blocks.items()}
    DetectorsSpec = create_model("DetectorsSpec", __base__=_Block, __doc__=_NoDetectors.__doc__, **fields)
    field_info = ModelMonitorSpec.model_fields["detectors"]
    field_info.annotation = DetectorsSpec
    field_info.default_factory = DetectorsSpec
    ModelMonitorSpec.model_rebuild(force=True)
    ModelMonitor.model_rebuild(force=True)
    return DetectorsSpec


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    namespace: str = "default"


class ModelMonitor(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    api_version: str = Field(f"{API_GROUP}/{API_VERSION}", alias="apiVersion")
    kind: Literal["ModelMonitor"] = "ModelMonitor"
    metadata: Metadata
    spec: ModelMonitorSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def model_name(self) -> str:
        return self.spec.model.name or self.metadata.name


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        elif p in ("function-after", "function-before") or str(p).startswith(("function-", "literal[")):
            continue
        else:
            parts.append("schema" if p == "schema_" else to_camel(str(p)))
    return ".".join(parts)


def monitor_from_dict(doc: dict[str, Any]) -> ModelMonitor:
    """Validate a ModelMonitor document; raise SpecError naming the first bad field."""
    if not isinstance(doc, dict):
        raise SpecError("", "a ModelMonitor must be a mapping")
    if doc.get("kind", KIND) != KIND:
        raise SpecError("kind", f"expected {KIND}, got {doc.get('kind')!r}")
    try:
        return ModelMonitor.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise SpecError(field, msg) from None


def load_monitor(path: Union[str, Path]) -> ModelMonitor:
    """Read a ModelMonitor from a YAML or JSON file (the first ModelMonitor document)."""
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except FileNotFoundError:
        raise SpecError("", f"no such file: {path}") from None
    except yaml.YAMLError as exc:
        raise SpecError("", f"{path} is not valid YAML: {exc}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == KIND:
            return monitor_from_dict(doc)
    raise SpecError("kind", f"{path} holds no document of kind {KIND}")


from vigil import components as _components  # noqa: E402,F401  (registers the detectors' spec blocks)
