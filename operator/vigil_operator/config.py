"""The operator's own settings, from environment variables prefixed ``VIGIL_OPERATOR_``.

These are the cluster-side choices a platform team makes once (the Helm chart sets
them): which images run the components, where trained artifacts live, how often status
is polled, the pod security identity, the defaults every component pod gets
(``component_defaults``: the chart's ``componentDefaults``), and what the operator refuses
(hostPath storage unless ``allow_host_path``). Everything a user decides per model is in
the `ModelMonitor` spec instead.

Default requests and limits per component are measured (bench/bench_memory.py) and kept in
``resources.yaml`` beside this module; the chart ships a copy and may override them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import yaml
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

    # -- init containers that fetch storage URIs into each pod's own volume
    storage_secret: str = Field("vigil-storage", description="Secret whose keys become env of fetchers and training "
                                                             "Jobs (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...); optional")

    # -- trained artifacts (one claim per monitor, unless spec.storage.artifactsUri) and
    #    detector state (one ReadWriteOnce claim per stateful component); owned by the monitor
    artifacts_size: str = "1Gi"
    artifacts_storage_class: Optional[str] = None
    artifacts_access_mode: str = Field("ReadWriteMany", description="ReadWriteMany: the training Jobs and every "
                                       "reading pod's init container may run on different nodes")

    state_size: str = "1Gi"

    # -- training Jobs
    training_backoff_limit: int = 2
    training_deadline_seconds: int = 3600

    # -- pods
    run_as_user: int = 65532
    component_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="pod controls every pod the operator creates gets (the chart's componentDefaults): "
                    "imagePullSecrets (added to a monitor's own), nodeSelector, tolerations, affinity, "
                    "topologySpreadConstraints, priorityClassName, annotations, labels, "
                    "serviceAccountAnnotations; and resources: {component: requirements} over resources.yaml")

    # -- what the operator refuses
    allow_host_path: bool = Field(False, description="let file:// storage mount host paths (kind, one-node tests)")
    network_policy: bool = Field(False, description="a NetworkPolicy per monitor: only its logger and the "
                                                    "operator's namespace reach its detector pods")
    network_policy_from: list[dict[str, Any]] = Field(
        default_factory=list, description="more NetworkPolicyPeers allowed to reach detector pods (e.g. Prometheus)")
    operator_namespace: Optional[str] = Field(None, description="the operator's own namespace (NetworkPolicy)")

    # -- events on NATS JetStream (spec.transport.type jetstream without a url)
    nats_url: Optional[str] = Field(None, description="NATS server of JetStream monitors that name none: the chart "
                                                      "sets the NATS it installs (nats.enabled) or transport.natsUrl")

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

    def resources(self, key: str) -> dict:
        """Default requests and limits of one container kind (a component, ``fetch`` or ``train``)."""
        override = (self.component_defaults.get("resources") or {}).get(key)
        measured = measured_resources()
        return _copy(override if override else measured.get(key, measured["default"]))


RESOURCES_FILE = Path(__file__).with_name("resources.yaml")


@lru_cache(maxsize=1)
def measured_resources() -> dict[str, dict]:
    return yaml.safe_load(RESOURCES_FILE.read_text())["resources"]


def _copy(doc: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(doc))
