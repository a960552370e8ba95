"""Settings of the drift detector service, read from `VIGIL_DRIFT_*` environment variables.

These are exactly the variables `vigil.plan.build_plan` gives the drift component:
``VIGIL_DRIFT_ARTIFACT`` (a saved alibi-detect detector directory) or
``VIGIL_DRIFT_REFERENCE`` (CSV/Parquet/.npy fitted at start-up when there is no
artifact), ``_FEATURE_NAMES`` and ``_CATEGORICAL`` (JSON), ``_P_VALUE``, ``_CORRECTION``,
``_WINDOW_SIZE``, ``_WINDOW_MODE``, ``_WINDOW_STEP``, ``_MAX_AGE_SECONDS``,
``_STATISTIC`` (the default statistic, ``spec.detectors.drift.type``), ``_STATISTICS`` (JSON
``{feature name: statistic}`` overrides), ``_PREPROCESS`` (``uae``: the artifact carries an
alibi-detect UAE encoding each instance, `vigil_detectors.drift.preprocess`), ``_STATE_DIR``, ``_MONITOR``
and ``_NAMESPACE``; `vigil.plan` builds this class from the spec and renders them.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from vigil_detectors.drift.statistics import base as _statistics
from vigil_detectors.frame.settings import DetectorSettings, category_counts

#: The registered statistics' names, for the JSON schema (and so the CRD's enums).
_NAMES: list[Any] = _statistics.names()


class DriftSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_DRIFT_", extra="ignore")

    #: Directory written by `alibi_detect.saving.save_detector` (KSDrift, TabularDrift, …).
    artifact: Optional[str] = None
    #: Reference data to fit the statistic from at start-up when there is no artifact.
    reference: Optional[str] = None
    #: Default statistic (``spec.detectors.drift.type``): one of `vigil_detectors.drift.statistics.names()`.
    #: A feature type it does not test gets ``ks`` (numeric) or ``chi2`` (categorical).
    statistic: str = Field("ks", json_schema_extra={"enum": _NAMES})
    #: Per-feature overrides of the statistic: {feature name: statistic}.
    statistics: dict[str, str] = Field(default_factory=dict,
                                       json_schema_extra={"additionalProperties": {"type": "string", "enum": _NAMES}})
    #: Significance level of the whole window (per-feature tests are corrected for multiple testing).
    p_value: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    #: Instances per window.
    window_size: int = Field(1000, ge=2)
    #: tumbling: disjoint windows, one check each; sliding: the last `window_size` instances,
    #: checked every `window_step` new instances.
    window_mode: Literal["tumbling", "sliding"] = "tumbling"
    window_step: Optional[int] = Field(None, ge=1, validate_default=True,
                                       description="sliding mode: instances between checks (default size/10)")
    #: Check what the window holds once its oldest unchecked instance is this old (0 = never).
    max_age_seconds: float = Field(600.0, ge=0.0)
    #: Preprocessing of tensor instances (``spec.detectors.drift.preprocess.type``, DESIGN §8): ``uae`` needs an
    #: artifact written by ``vigil train`` (the encoder with its seeded weights and the encoded reference).
    #: ``model-output``: the drift service reads response events instead, testing the model's class
    #: probabilities (``predict_proba``) against the reference's, which the artifact holds.
    preprocess: Optional[Literal["uae", "model-output"]] = None
    #: Where the window is checkpointed so a restart loses no instances (None = not persisted).
    state_dir: Optional[str] = None
    #: A baseline directory (``spec.baseline.storageUri``, DESIGN §9): the binned statistics use the bins of its
    #: ``statistics.json`` histograms (without one they are the reference's, computed the same way).
    baseline: Optional[str] = None
    #: What drifts (``spec.detectors.drift.target``, DESIGN §10): the request features, the model's outputs
    #: (response events; `vigil_detectors.drift.outputs`), or both.
    target: Literal["inputs", "outputs", "both"] = "inputs"
    #: outputs: the model server run on the reference at start-up for the reference outputs.
    model_url: Optional[str] = None
    model_name: str = "model"
    #: outputs: ``classification`` | ``regression`` (the metrics block's task; None: inferred from the outputs).
    task: Optional[Literal["classification", "regression"]] = None
    #: outputs: class names of ``predict_proba``'s columns (the metrics block's classes).
    classes: Optional[list[Any]] = None
    #: Label drift on feedback truths (set when the monitor has a metrics block and target is not inputs).
    labels: bool = False

    @field_validator("window_step")
    @classmethod
    def _step(cls, step: Optional[int], info: ValidationInfo) -> Optional[int]:
        size = info.data.get("window_size")
        if size is None:  # window_size itself is invalid: that error is reported
            return step
        if step is None:
            return max(1, size // 10)
        if step > size:
            raise ValueError(f"the step ({step}) cannot exceed the window size ({size})")
        return step

    @field_validator("statistic")
    @classmethod
    def _known(cls, name: str) -> str:
        _statistics.get(name)
        return name

    @field_validator("statistics")
    @classmethod
    def _overrides(cls, overrides: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        names = info.data.get("feature_names")
        cats = {int(k) for k in info.data.get("categorical") or {}}
        categorical = [n for n in _statistics.names() if _statistics.CATEGORICAL in _statistics.get(n).accepts]
        for feature, name in overrides.items():
            stat = _statistics.get(name)
            if names is None:
                continue
            if feature not in names:
                raise ValueError(f"names a feature {feature!r} not in the feature names {names}")
            if names.index(feature) in cats and _statistics.CATEGORICAL not in stat.accepts:
                raise ValueError(f"{name} does not test categorical features like {feature!r} "
                                 f"(use one of {', '.join(categorical)})")
        return overrides

    @property
    def statistics_indices(self) -> dict[int, str]:
        """The per-feature overrides by column index (names resolved through `feature_names`)."""
        names = self.feature_names or []
        return {names.index(f) if f in names else int(f): stat for f, stat in self.statistics.items()}

    @property
    def categorical_indices(self) -> dict[int, Optional[int]]:
        return category_counts(self.categorical)
