"""Settings of the metrics service (env prefix ``VIGIL_METRICS_``, set by `vigil.plan`)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil_detectors.frame.settings import DetectorSettings


class MetricsSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_METRICS_", extra="ignore")

    #: classification | regression
    task: Literal["classification", "regression"] = "classification"
    #: Class names (or values) in index order, as JSON; index i of a probability row is classes[i].
    #: null: classes are learned from the labels seen (at most `max_classes`).
    classes: Optional[list[Union[str, int]]] = None
    #: Size of the recent window: the last N joined instances the `window="recent"` metrics cover.
    window: int = Field(1000, ge=1)
    #: How long a response waits for its feedback (and feedback for its response) before it expires.
    feedback_ttl_seconds: float = Field(3600.0, gt=0)
    #: Most pending responses (and, separately, pending feedback events) kept; the oldest are evicted.
    max_pending: int = Field(100_000, ge=1)
    #: Bound on learned classes when `classes` is null (keeps the `class` label bounded).
    max_classes: int = Field(100, ge=2)
