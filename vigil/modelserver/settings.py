"""Settings of the model server, from ``VIGIL_MODEL_*`` environment variables (see vigil.plan)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.telemetry import LOCAL_MONITOR, LOCAL_NAMESPACE


class ModelServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_MODEL_", extra="ignore")

    uri: str = Field(description="local path (or file:// URI) of the model file or directory")
    format: Literal["sklearn", "xgboost", "tensorflow"] = "sklearn"
    name: str = "model"
    #: The shape of one tensor instance (spec.schema.shape): requests decode to (n, *shape) and any
    #: other instance shape is a 400 naming both; None: rows of features (or the model's own input shape).
    shape: Optional[list[PositiveInt]] = None
    monitor: str = LOCAL_MONITOR
    namespace: str = LOCAL_NAMESPACE
    #: classification | regression, or auto: ask the model (sklearn estimator type,
    #: XGBoost objective, Keras output width > 1 means class scores).
    task: Literal["auto", "classification", "regression"] = "auto"
    #: Requests with more rows than this run the model in a worker thread so that
    #: health checks stay responsive; small ones run inline (cheaper).
    thread_rows: int = Field(256, ge=0)
    #: The monitor's schema: rows may be objects keyed by these names (DESIGN §8)…
    feature_names: Optional[list[str]] = None
    #: … and categorical features {"column index": n categories | [values]} take their strings.
    categorical: dict[str, Union[int, None, list[Union[str, int, float]]]] = Field(default_factory=dict)
