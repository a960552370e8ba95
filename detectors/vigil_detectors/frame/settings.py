"""Settings every detector service shares; each detector subclasses with its own env prefix."""

from __future__ import annotations

import re
from typing import Annotated, Optional, Union

from pydantic import Field, PositiveInt, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.instances import InputSchema
from vigil.telemetry import LOCAL_MONITOR, LOCAL_NAMESPACE
from vigil.transport import TransportConfig, names

#: A categorical block as the services take it: ``{"column index": number of categories | null |
#: [values]}`` (`vigil.plan` renders the schema's block so; a value list maps strings to codes).
ColumnKey = Annotated[str, StringConstraints(pattern=r"^\d+$")]
#: A category value list names at least one value (an empty list would make every value unseen).
Categories = dict[ColumnKey, Union[PositiveInt, None, Annotated[list[Union[str, int, float]], Field(min_length=1)]]]


def category_counts(categorical: Categories) -> dict[int, Optional[int]]:
    """``{column index: number of categories | None}`` of a services' categorical block."""
    return {int(k): len(v) if isinstance(v, list) else v for k, v in categorical.items()}


class DetectorSettings(BaseSettings):
    """Common settings. A subclass sets ``model_config = SettingsConfigDict(env_prefix="VIGIL_DRIFT_")``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_DETECTOR_", extra="ignore")

    monitor: str = LOCAL_MONITOR
    namespace: str = LOCAL_NAMESPACE
    #: Feature names of one instance; their count is enforced on every request event.
    feature_names: Optional[list[str]] = None
    #: Categorical features: {"feature index": number of categories, or the list of its values}.
    categorical: Categories = Field(default_factory=dict)
    #: HTTP (events POSTed to ``/``) or JetStream (a durable pull consumer; ``POST /`` still works).
    transport: TransportConfig = Field(default_factory=TransportConfig)
    #: JetStream: only these partitions of the stream (one replica's share, keyed by inference id); None: all.
    consumer_partitions: Optional[list[int]] = None
    #: JetStream, a partitioned detector (metrics) run as this many replicas of a StatefulSet: each pod
    #: consumes its share of the partitions (`vigil.transport.names.replica_partitions`), by the ordinal
    #: that ends its `pod_name`. None: one consumer for every replica (or `consumer_partitions`).
    consumer_replicas: Optional[PositiveInt] = None
    #: The pod's name (the downward API's metadata.name); a StatefulSet pod's ends with ``-<ordinal>``.
    pod_name: Optional[str] = None
    #: The shape of one tensor instance (spec.schema.shape, DESIGN §8), exclusive with feature_names:
    #: request events then decode to (n, *shape) arrays, and any other instance shape is a 400.
    shape: Optional[list[PositiveInt]] = None

    @model_validator(mode="after")
    def _replica_share(self):
        n = self.consumer_replicas or 1
        if n > 1 and not self.transport.jetstream:
            raise ValueError(f"{n} replicas each consume a share of the JetStream partitions: over HTTP one "
                             "replica receives every event (transport jetstream, or replicas 1)")
        if n > self.transport.partitions:
            raise ValueError(f"{n} replicas need at least as many transport partitions, "
                             f"not {self.transport.partitions}")
        return self

    def own_partitions(self) -> Optional[tuple[int, ...]]:
        """The partitions this process consumes: `consumer_partitions`, else its replica's share, else None (all)."""
        if self.consumer_partitions:
            return tuple(self.consumer_partitions)
        if not self.consumer_replicas or self.consumer_replicas == 1:
            return None
        found = re.search(r"-(\d+)$", self.pod_name or "")
        if not found:
            raise ValueError(f"consumer_replicas {self.consumer_replicas} needs pod_name ending with the pod's "
                             f"ordinal (a StatefulSet's <name>-<n>), got {self.pod_name!r}")
        return names.replica_partitions(int(found.group(1)), self.consumer_replicas, self.transport.partitions)

    @property
    def n_features(self) -> Optional[int]:
        return len(self.feature_names) if self.feature_names else None

    def input_schema(self) -> InputSchema:
        """How request instances are decoded (`vigil.instances.decode_table`)."""
        return InputSchema.from_settings(self.feature_names, self.categorical)
