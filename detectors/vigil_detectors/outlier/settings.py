"""Settings of the outlier service (env prefix ``VIGIL_OUTLIER_``, set by `vigil.plan`)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil_detectors.frame.settings import DetectorSettings


class OutlierSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_OUTLIER_", extra="ignore")

    #: Directory of an alibi-detect `OutlierVAE` saved with `save_detector` (what `vigil train` writes).
    artifact: Optional[str] = None
    #: Most rows scored in one VAE call; 1 turns batching off (one call per event).
    max_batch_size: int = Field(64, ge=1, le=4096)
    #: Longest an event waits for others to share its VAE call (only while events are concurrent).
    max_batch_delay_ms: float = Field(5.0, ge=0.0, le=1000.0)
    #: The outlier rate in `/status` is over this many most recent instances.
    rate_window: int = Field(1000, ge=1)
    #: Add per-feature scores (``feature_score``; per pixel for images) to each reply. None: only for
    #: tensor instances (``shape``), where they say which pixels are unusual (DESIGN §8).
    feature_scores: Optional[bool] = None
    #: TensorFlow intra-/inter-op threads (a VAE scored with TensorFlow); the VAE is tiny, so 1 is fastest.
    #: 0 = TensorFlow's default.
    tf_threads: int = Field(1, ge=0)
