"""Settings of the request logger, from ``VIGIL_LOGGER_*`` environment variables (see vigil.plan).

``VIGIL_LOGGER_SINKS`` is a JSON list: ``[{"name": "drift", "url": "http://...",
"types": ["request"]}]``; ``types`` (request / response / feedback) defaults to all.
``VIGIL_LOGGER_TRANSPORT`` (JSON, `vigil.transport.TransportConfig`) picks HTTP or JetStream.
``VIGIL_LOGGER_CAPTURE`` (JSON, `vigil.capture.settings.CaptureSettings`) turns capture on.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, Field, field_validator, model_serializer, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.capture.settings import CaptureSettings
from vigil.telemetry import LOCAL_MONITOR, LOCAL_NAMESPACE
from vigil.transport import TransportConfig

EventKind = Literal["request", "response", "feedback"]
ALL_KINDS: tuple[EventKind, ...] = ("request", "response", "feedback")


class SinkConfig(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    url: str
    types: list[EventKind] = Field(default_factory=lambda: list(ALL_KINDS))
    #: JetStream: the sink's replicas each consume a share of the partitions (metrics), so the logger
    #: creates one durable consumer per replica (`vigil.transport.jetstream.consumer_specs`). None: one.
    consumer_replicas: Optional[int] = Field(None, ge=1, le=64)

    @model_serializer(mode="wrap")
    def _omit_unset_replicas(self, handler):  # the env of sinks without replicas stays as it was (same digests)
        out = handler(self)
        if out.get("consumer_replicas") is None:
            out.pop("consumer_replicas", None)
        return out

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"sink url must be http(s)://, got {v!r}")
        return v


class LoggerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_LOGGER_", extra="ignore")

    upstream: str = "http://127.0.0.1:8081"
    #: `modelname` attribute of events; empty = the name in the request path.
    model_name: str = ""
    mode: Literal["all", "request", "response"] = "all"
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    #: Bound of each sink's queue (events waiting to be sent).
    queue_size: int = Field(10000, ge=1)
    #: Bound of each sink's queue in bytes (bodies waiting or being delivered); 64 MiB.
    queue_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    sinks: list[SinkConfig] = Field(default_factory=list)
    #: How events reach the sinks: HTTP POSTs to each (default) or the monitor's JetStream stream, where
    #: each sink is a detector's durable consumer (its name and types; its url is then unused).
    transport: TransportConfig = Field(default_factory=TransportConfig)
    #: Rotated files of every (sampled) event (`vigil.capture.writer`); None: no capture.
    capture: Optional[CaptureSettings] = None
    #: The pod's name (Kubernetes downward API, set by the operator when capturing): capture files go
    #: to a subdirectory of this name, so replicas of the logger never write the same file.
    pod_name: str = ""
    monitor: str = LOCAL_MONITOR
    namespace: str = LOCAL_NAMESPACE
    #: The metrics detector's task and classes, when it runs: feedback truth must fit them
    #: (`vigil.logger.truth`). None: only the shape and finiteness of truth are checked.
    task: Optional[Literal["classification", "regression"]] = None
    classes: Optional[list[Union[str, int]]] = None

    # upstream (inference path)
    upstream_timeout_seconds: float = Field(30.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(5.0, gt=0)
    upstream_max_connections: int = Field(256, ge=1)
    #: /readyz also asks the upstream's /v2/health/ready (a 404 there, i.e. a V1-only
    #: server, counts as ready). False: ready as soon as the proxy is up.
    ready_requires_upstream: bool = True

    # sinks (event path)
    sink_workers: int = Field(4, ge=1, le=64)
    sink_timeout_seconds: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff_initial_seconds: float = Field(0.05, ge=0)
    backoff_max_seconds: float = Field(2.0, ge=0)
    #: On shutdown, how long queued events may still be delivered before the rest are
    #: counted as dropped (reason ``shutdown``).
    shutdown_grace_seconds: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _unique_sinks(self):
        names = [s.name for s in self.sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _classes(self):
        if self.task == "classification" and self.classes is not None:
            from vigil.labels import ClassLabels

            ClassLabels(self.classes)  # at least two, unique: what the metrics service refuses too
        return self
