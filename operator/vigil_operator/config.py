"""The operator's own settings, from environment variables prefixed ``VIGIL_OPERATOR_``.

These are the cluster-side choices a platform team makes once (the Helm chart sets
them): which images run the components, where trained artifacts live, how often status
is polled, the pod security identity. Everything a user decides per model is in the
`ModelMonitor` spec instead.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil import __version__


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_OPERATOR_", extra="ignore")

    # -- images: `{image_registry}/vigil-server:{image_tag}` and `.../vigil-detectors:...`
    image_registry: str = "ghcr.io/vigil-monitor"
    image_tag: str = __version__
    image_pull_policy: str = "IfNotPresent"
    server_image_name: str = "vigil-server"
    detectors_image_name: str = "vigil-detectors"

    # -- init containers that fetch remote storage URIs into an emptyDir
    s3_fetch_image: str = "amazon/aws-cli:2.17.50"
    gs_fetch_image: str = "google/cloud-sdk:497.0.0-slim"
    http_fetch_image: str = "curlimages/curl:8.10.1"
    storage_secret: str = Field("vigil-storage", description="Secret whose keys become env of fetchers and training "
                                                             "Jobs (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...); optional")

    # -- trained artifacts and detector state: one PVC per monitor, owned by it
    artifacts_size: str = "1Gi"
    artifacts_storage_class: Optional[str] = None
    artifacts_access_mode: str = "ReadWriteOnce"

    # -- training Jobs
    training_backoff_limit: int = 2
    training_deadline_seconds: int = 3600

    # -- pods
    run_as_user: int = 65532
    default_cpu_request: str = "50m"
    default_memory_request: str = "128Mi"
    tensorflow_memory_request: str = "512Mi"

    # -- status
    status_interval: float = Field(10.0, gt=0, description="seconds between /status polls of each monitor")
    status_timeout: float = Field(2.0, gt=0)
    status_urls: dict[str, str] = Field(
        default_factory=dict,
        description="component base URLs to poll instead of the in-cluster Service URL, keyed "
                    "'namespace/monitor/component' (for an operator running outside the cluster, and tests)")

    def image(self, role: str) -> str:
        name = self.detectors_image_name if role == "detectors" else self.server_image_name
        return f"{self.image_registry.rstrip('/')}/{name}:{self.image_tag}"
