"""The detector contract: what the frame asks of each detector, and what it hands it.

A detector is constructed with its settings and a `ServiceMetrics`, loads its artifact
once (`load`, run in a worker thread so `/healthz` answers while it loads and `/readyz`
only turns ready afterwards), then gets each valid event as an `InferenceEvent` whose
instances/outputs are already decoded and checked. It returns the body of its reply
CloudEvent (or None), and describes itself for `/status`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Optional, TypeVar

import numpy as np

from vigil.errors import VigilError
from vigil.events import decode_instances, decode_outputs
from vigil.instances import Decoded, InputSchema, decode_table
from vigil.telemetry import ServiceMetrics
from vigil_detectors.frame.checkpoint import CheckpointHealth
from vigil_detectors.frame.settings import DetectorSettings


class DetectorError(VigilError):
    """Base class of every error a detector raises on purpose (bad artifact, bad config…)."""


@dataclass
class InferenceEvent:
    id: str
    type: str
    kind: str  # request | response | feedback
    inference_id: Optional[str]
    attributes: dict[str, Any]
    data: Any  # the parsed JSON body
    #: (n, f) float64 for request events (the rows not skipped); (n, *shape) for a tensor schema
    instances: Optional[np.ndarray] = None
    #: request events: the decoded body (`vigil.instances`), and which of its rows were skipped (missing values)
    decoded: Optional[Decoded] = None
    skipped: Optional[np.ndarray] = None
    outputs: Optional[np.ndarray] = None  # for response events
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_received(self) -> int:
        """Rows the event carried (skipped ones included)."""
        return len(self.decoded) if self.decoded is not None else self.rows

    @property
    def rows(self) -> int:
        if self.instances is not None:
            return int(self.instances.shape[0])
        if self.outputs is not None:
            return int(self.outputs.shape[0])
        return 1


#: The settings class a detector reads (a `DetectorSettings` subclass).
SettingsT = TypeVar("SettingsT", bound=DetectorSettings)


class Detector(ABC, Generic[SettingsT]):
    """Generic over its settings: ``class DriftDetector(Detector[DriftSettings])``, so
    ``self.settings`` has the detector's own fields, typed."""

    #: component name: outlier | drift | metrics | explainer
    name: ClassVar[str]
    #: event kinds this detector consumes; others are acknowledged and ignored (an instance may narrow or
    #: widen them from its settings, as drift does for its target)
    accepts: frozenset[str] = frozenset({"request"})
    #: JetStream (`frame.consumer`): process a fetched batch one event after another, in stream
    #: order (a window, a slow explanation), instead of all at once
    ordered: ClassVar[bool] = False

    def __init__(self, settings: SettingsT, metrics: ServiceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.checkpoint = CheckpointHealth(metrics)  # a stateful detector reports its writes here
        self._input_schema: Optional[InputSchema] = None  # how `decode_request` reads rows (from the settings)

    @abstractmethod
    def load(self) -> None:
        """Load or fit the artifact (blocking; runs in a thread at start-up)."""

    @abstractmethod
    async def process(self, event: InferenceEvent) -> Optional[dict]:
        """Handle one valid event; return the reply body or None. Raise PayloadError for bad input."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """This detector's block of `/status`, e.g. ``{"drift": {...}}``."""

    async def start(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """After `load`: start background tasks (timers, batchers)."""

    async def stop(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """On shutdown: stop tasks, persist state."""

    def decode_request(self, event: InferenceEvent) -> None:
        """Decode a request body into `event.instances`. The default reads rows with
        `vigil.instances.decode_table` (named features, category strings; an unseen category as
        code k) and skips the rows holding a missing value (or an unseen code of a category of
        unknown count): `event.instances` holds the others, `event.skipped` says which, and the
        frame counts them. A tensor schema (``shape``) decodes (n, *shape) batches. A detector that
        counts bad values instead of refusing them (quality) overrides it."""
        if self.settings.shape:
            event.instances = decode_instances(event.data, self.settings.n_features, shape=self.settings.shape)
            return
        if self._input_schema is None:
            self._input_schema = self.settings.input_schema()
        decoded = decode_table(event.data, self._input_schema)
        if decoded.complete:  # nothing missing, nothing to recode
            event.decoded, event.skipped, event.instances = decoded, np.zeros(len(decoded), dtype=bool), decoded.rows
            return
        rows = decoded.coded(self._input_schema)
        skipped = np.isnan(rows).any(axis=1)
        event.decoded, event.skipped = decoded, skipped
        event.instances = rows[~skipped] if skipped.any() else rows

    def decode_outputs(self, data: Any) -> Optional[np.ndarray]:
        """Decode a response body for `InferenceEvent.outputs`. The default wants numbers;
        a detector that reads class names (V2 ``BYTES`` labels) overrides it."""
        return decode_outputs(data)

    @property
    def fetch_batch(self) -> int:
        """JetStream: how many events to fetch at once (outlier: its maxBatchSize)."""
        return 100

    def holds(self, sequence: int) -> bool:
        """JetStream: whether this detector's checkpoint already has the event of this stream sequence
        (a redelivery after a restart is then acknowledged without being processed again)."""
        return False

    def routers(self) -> list:
        """Extra FastAPI routers (the explainer's `/explain`)."""
        return []
