"""Settings of the quality detector service, read from `VIGIL_QUALITY_*` environment variables.

These are what `vigil.plan` gives the quality component: ``VIGIL_QUALITY_BASELINE`` (a
baseline directory: ``statistics.json`` + ``constraints.json``, `vigil.baseline`) or, when the
monitor has none, ``VIGIL_QUALITY_REFERENCE`` (reference data the service profiles at start-up
into ``<state dir>/baseline``), ``_FEATURE_NAMES`` and ``_CATEGORICAL`` (JSON: column index ->
value list or number of categories), ``_WINDOW_SIZE``, ``_MAX_AGE_SECONDS``, ``_STATE_DIR``
(history and the computed baseline), ``_HISTORY_MAX_BYTES``, ``_MONITOR`` and ``_NAMESPACE``.
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil_detectors.frame.settings import ColumnKey, DetectorSettings

CategoryValues = Union[list[Union[str, int, float]], int, None]


class QualitySettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_QUALITY_", extra="ignore")

    #: A baseline directory (statistics.json + constraints.json), e.g. an edited copy.
    baseline: Optional[str] = None
    #: Reference data profiled into a baseline at start-up when there is no baseline directory.
    reference: Optional[str] = None
    #: Categorical features: {"column index": [values] | number of categories}.
    categorical: dict[ColumnKey, CategoryValues] = Field(default_factory=dict)
    #: Instances per window: each full window is checked once and appended to the history.
    window_size: int = Field(1000, ge=1)
    #: Check what the window holds once its oldest instance is this old (0 = never).
    max_age_seconds: float = Field(600.0, ge=0.0)
    #: Where the history (history.jsonl) and a computed baseline are kept (None: in memory only).
    state_dir: Optional[str] = None
    #: Size bound of the history file (the older half is dropped beyond it).
    history_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    @property
    def categorical_indices(self) -> dict[int, Union[tuple, int, None]]:
        return {int(k): tuple(v) if isinstance(v, list) else v for k, v in self.categorical.items()}
