"""Settings of the drift detector service, read from `VIGIL_DRIFT_*` environment variables.

These are exactly the variables `vigil.plan.build_plan` gives the drift component:
``VIGIL_DRIFT_ARTIFACT`` (a saved alibi-detect detector directory) or
``VIGIL_DRIFT_REFERENCE`` (CSV/Parquet/.npy fitted at start-up when there is no
artifact), ``_FEATURE_NAMES`` and ``_CATEGORICAL`` (JSON), ``_P_VALUE``, ``_CORRECTION``,
``_WINDOW_SIZE``, ``_WINDOW_MODE``, ``_WINDOW_STEP``, ``_MAX_AGE_SECONDS``,
``_STATE_DIR``, ``_MONITOR`` and ``_NAMESPACE``.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from vigil_detectors.frame import DetectorSettings


class DriftSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_DRIFT_", extra="ignore")

    #: Directory written by `alibi_detect.saving.save_detector` (KSDrift, TabularDrift, …).
    artifact: Optional[str] = None
    #: Reference data to fit the statistic from at start-up when there is no artifact.
    reference: Optional[str] = None
    #: Categorical features: {"feature index": number of categories}; chi-squared is used for them.
    categorical: dict[str, Optional[int]] = Field(default_factory=dict)
    #: Significance level of the whole window (per-feature tests are corrected for multiple testing).
    p_value: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    #: Instances per window.
    window_size: int = Field(1000, ge=2)
    #: tumbling: disjoint windows, one check each; sliding: the last `window_size` instances,
    #: checked every `window_step` new instances.
    window_mode: Literal["tumbling", "sliding"] = "tumbling"
    window_step: Optional[int] = Field(None, ge=1)
    #: Check what the window holds once its oldest unchecked instance is this old (0 = never).
    max_age_seconds: float = Field(600.0, ge=0.0)
    #: Where the window is checkpointed so a restart loses no instances (None = not persisted).
    state_dir: Optional[str] = None

    @field_validator("categorical")
    @classmethod
    def _indices(cls, v: dict[str, Optional[int]]) -> dict[str, Optional[int]]:
        for key, n in v.items():
            if not key.lstrip("-").isdigit() or int(key) < 0:
                raise ValueError(f"categorical keys are feature indices (0, 1, …), got {key!r}")
            if n is not None and n < 1:
                raise ValueError(f"categorical feature {key} needs at least one category, got {n}")
        return v

    @model_validator(mode="after")
    def _step(self):
        if self.window_step is None:
            self.window_step = max(1, self.window_size // 10)
        if self.window_step > self.window_size:
            raise ValueError(f"window_step ({self.window_step}) cannot exceed window_size ({self.window_size})")
        return self

    @property
    def categorical_indices(self) -> dict[int, Optional[int]]:
        return {int(k): v for k, v in self.categorical.items()}
