"""How events travel from the logger to the detectors (DESIGN §13): one interface, two transports.

``http`` (the default, nothing to install) POSTs each binary-mode CloudEvent to every
detector (`vigil.logger.sinks.Sink`). ``jetstream`` publishes it once to the monitor's NATS
JetStream stream, where each detector is a durable pull consumer
(`vigil.transport.jetstream`, `vigil_detectors.frame.consumer`). `TransportConfig` is the one
home of the transport's settings: ``spec.transport`` inherits its fields, the logger and
every detector read it (``VIGIL_LOGGER_TRANSPORT``, ``VIGIL_DRIFT_TRANSPORT`` …, JSON).
This module stays light (no nats import), so the planner and operator can import it.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator

#: Default bound of a monitor's stream (1 GiB): a publish beyond it is refused (a counted drop).
DEFAULT_MAX_BYTES = 1024**3


class TransportConfig(BaseModel):
    """Which transport carries the events, and where."""

    type: Literal["http", "jetstream"] = Field("http", description=(
        "http: the logger POSTs CloudEvents to each detector; jetstream: through the monitor's NATS JetStream "
        "stream, detectors as durable pull consumers."))
    url: Optional[str] = Field(None, description=(
        "NATS server URL (nats://host:4222). Empty with jetstream: `vigil up` starts a local nats-server, the "
        "operator uses the chart's NATS."))
    partitions: int = Field(4, ge=1, le=64, description=(
        "Subjects per event kind, keyed by inference id (request, response and feedback of one inference "
        "share a partition)."))
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, description=(
        "Bound of the monitor's stream in bytes; a publish beyond it is refused and counted as a drop."))
    ack_wait_seconds: float = Field(10.0, gt=0, le=10.0, description=(
        "How long a fetched event may stay unacknowledged before JetStream redelivers it."))

    @field_validator("url")
    @classmethod
    def _nats(cls, v: Optional[str]) -> Optional[str]:
        if v and not v.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"a NATS url is nats://host:port (or tls://), got {v!r}")
        return v or None

    @property
    def jetstream(self) -> bool:
        return self.type == "jetstream"
