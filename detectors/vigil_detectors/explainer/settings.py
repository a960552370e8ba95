"""Settings of the explainer service (env prefix ``VIGIL_EXPLAINER_``, set by `vigil.plan`)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vigil_detectors.frame.settings import DetectorSettings


class ExplainerSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_EXPLAINER_", extra="ignore")

    #: anchor-tabular (alibi `AnchorTabular`, rows of features) or anchor-image (alibi `AnchorImage` on
    #: superpixels of one image of the schema's shape; DESIGN §8).
    type: Literal["anchor-tabular", "anchor-image"] = "anchor-tabular"
    #: Directory of an explainer saved with alibi's `save_explainer` (what `vigil train` writes).
    artifact: Optional[str] = None
    #: Base URL of the model server (or any V2 endpoint), e.g. http://127.0.0.1:8081.
    model_url: str = "http://127.0.0.1:8081"
    #: Model name on the V2 path /v2/models/{name}/infer.
    model_name: str = "model"
    #: Anchor precision threshold passed to `AnchorTabular.explain`.
    threshold: float = Field(0.95, gt=0.0, le=1.0)
    #: Share of request-event rows explained in the background (0 = only POST /explain).
    sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    #: Most rows sent to the model server in one V2 call (alibi's sample batches are chunked).
    batch_size: int = Field(1000, ge=1)
    #: Rows alibi samples per precision estimate (its `batch_size`): the usual size of one model call.
    anchor_batch_size: int = Field(100, ge=1)
    #: Samples alibi draws to estimate coverage (no model calls).
    coverage_samples: int = Field(10000, ge=100)
    #: Explanations running at once (each uses one loaded copy of the explainer).
    max_concurrent: int = Field(2, ge=1, le=16)
    #: POST /explain callers allowed to wait for a free slot; more get 503.
    max_waiting: int = Field(16, ge=0)
    #: Timeout of one model server call.
    model_timeout_seconds: float = Field(10.0, gt=0)
    #: How long start-up waits for the model server to answer /v2/health/ready (null: as long as it
    #: takes; /readyz stays 503 meanwhile, and turns ready by itself once the model server is up).
    model_wait_seconds: Optional[float] = Field(None, ge=0)
    #: The longest one explanation may take: past it the explanation is abandoned at its next model call and
    #: ``POST /explain`` answers 504 ``{"reason": "timeout"}`` (never a hang; a sampled one is counted as failed).
    timeout_seconds: float = Field(60.0, gt=0)
    #: anchor-image: probability that a superpixel outside the anchor keeps its pixels in a perturbed sample
    #: (the others are replaced by their segment's mean colour).
    p_sample: float = Field(0.5, gt=0.0, lt=1.0)
    #: Seed of alibi's sampler (None: random).
    seed: Optional[int] = None
