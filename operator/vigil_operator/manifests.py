"""Kubernetes objects for a monitor's plan: pure functions, no API calls.

Per component of the plan (`vigil.plan.Component`): a ConfigMap holding exactly its
``Component.env``, a Service on port 8080 and a Deployment running ``Component.command``.
Per monitor: a ServiceAccount (no API token mounted: components never call the
Kubernetes API), the artifacts PVC when something is trained or keeps state, one
training Job per detector Vigil must train, and a ServiceMonitor when asked for.

Every pod runs as a non-root user with a read-only root filesystem, no privilege
escalation and all capabilities dropped; ``/tmp`` is an emptyDir. Probes hit
``/healthz`` (liveness, startup) and ``/readyz`` (readiness). The pod template carries
``vigil.dev/digest`` (``Component.digest()``) so a component's pods roll exactly when its
inputs change, and the Prometheus scrape annotations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from vigil.auth import TOKEN_ENV
from vigil.plan import Component, Plan, TrainStep, train_argv
from vigil_operator.config import OperatorConfig
from vigil_operator.placement import MOUNT_ROOT, PORT, KubePlacement, Storage, resolve

MANAGED_BY = "vigil-operator"
L_NAME, L_INSTANCE, L_COMPONENT = "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"
L_PART_OF, L_MANAGED_BY, L_VERSION = "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"
L_MONITOR, L_ROLE = "vigil.dev/monitor", "vigil.dev/role"
A_DIGEST = "vigil.dev/digest"  # Component.digest(): what shapes the component's pods
A_APPLIED = "vigil.dev/applied"  # hash of the whole rendered object: patch only when it changes


# ----------------------------------------------------------------------------- labels & names

def labels(monitor: str, component: Optional[str] = None, role: str = "serve", version: Optional[str] = None) -> dict:
    out = {L_NAME: "vigil", L_INSTANCE: monitor, L_PART_OF: "vigil", L_MANAGED_BY: MANAGED_BY,
           L_MONITOR: monitor, L_ROLE: role}
    if component:
        out[L_COMPONENT] = component
    if version:
        out[L_VERSION] = version
    return out


def selector(monitor: str, component: str) -> dict:
    """Deployment selector: immutable once created, so it holds only stable labels."""
    return {L_NAME: "vigil", L_INSTANCE: monitor, L_COMPONENT: component}


def owned_selector(monitor: str) -> str:
    """Label selector for every object the operator made for one monitor."""
    return f"{L_INSTANCE}={monitor},{L_MANAGED_BY}={MANAGED_BY}"


def component_name(monitor: str, component: str) -> str:
    return f"{monitor}-{component}"


def service_account_name(monitor: str) -> str:
    return f"{monitor}-vigil"


def _hash(doc: Any, n: int) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:n]


def train_job_name(monitor: str, step: TrainStep, image: str) -> str:
    """Changes whenever the training inputs change, so a new Job (Jobs are immutable) trains again."""
    return f"{monitor}-{step.component}-train-{_hash([step.__dict__, image], 5)}"


def stamp(obj: dict) -> dict:
    """Set `vigil.dev/applied` to the hash of the rest of the object (what the reconciler compares)."""
    annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(A_APPLIED, None)
    annotations[A_APPLIED] = _hash(obj, 16)
    return obj


def _meta(name: str, namespace: str, lbls: dict, annotations: Optional[dict] = None) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": dict(lbls)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# ----------------------------------------------------------------------------- pod pieces

def pod_security_context(config: OperatorConfig) -> dict:
    uid = config.run_as_user
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def _resources(resources: dict, config: OperatorConfig, tensorflow: bool) -> dict:
    if resources:
        return json.loads(json.dumps(resources))  # a copy the caller cannot mutate
    memory = config.tensorflow_memory_request if tensorflow else config.default_memory_request
    return {"requests": {"cpu": config.default_cpu_request, "memory": memory}}


def _vol_name(prefix: str, key: str) -> str:
    name = f"{prefix}-{key}".lower()
    return name if len(name) <= 63 and name.replace("-", "").isalnum() else f"{prefix}-{_hash(key, 10)}"


_FETCH = {
    "s3": ('mkdir -p "$(dirname "$DEST")" && '
           '{ aws s3 cp --only-show-errors "$SRC" "$DEST" || aws s3 cp --only-show-errors --recursive "$SRC" "$DEST"; }'),
    "gs": 'mkdir -p "$(dirname "$DEST")" && gcloud storage cp --recursive "$SRC" "$DEST"',
    "http": 'curl -fsSL --retry 3 --create-dirs -o "$DEST" "$SRC"',
}


@dataclass
class StorageMounts:
    """Volumes, mounts and fetch init containers that make a set of storage URIs readable."""

    volumes: list = field(default_factory=list)
    mounts: list = field(default_factory=list)
    init_containers: list = field(default_factory=list)


def storage_mounts(uris: Iterable[str], config: OperatorConfig, writable_claims: Iterable[str] = ()) -> StorageMounts:
    out = StorageMounts()
    writable = set(writable_claims)
    seen: set[str] = set()
    resolved: list[Storage] = [resolve(u) for u in dict.fromkeys(u for u in uris if u)]
    claims = list(dict.fromkeys([s.claim for s in resolved if s.claim] + sorted(writable)))
    for claim in claims:
        name = _vol_name("pvc", claim)
        out.volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim,
                                                                    "readOnly": claim not in writable}})
        out.mounts.append({"name": name, "mountPath": f"{MOUNT_ROOT}/pvc/{claim}", "readOnly": claim not in writable})
    remote = []
    for s in resolved:
        if s.host_path and s.host_path not in seen:
            seen.add(s.host_path)
            name = _vol_name("host", _hash(s.host_path, 10))
            out.volumes.append({"name": name, "hostPath": {"path": s.host_path}})
            out.mounts.append({"name": name, "mountPath": s.path, "readOnly": True})
        elif s.remote:
            remote.append(s)
    if remote:
        out.volumes.append({"name": "fetch", "emptyDir": {}})
        out.mounts.append({"name": "fetch", "mountPath": f"{MOUNT_ROOT}/fetch", "readOnly": True})
        for i, s in enumerate(remote):
            kind = "http" if s.scheme in ("http", "https") else s.scheme
            image = {"s3": config.s3_fetch_image, "gs": config.gs_fetch_image, "http": config.http_fetch_image}[kind]
            out.init_containers.append({
                "name": f"fetch-{i}", "image": image, "imagePullPolicy": config.image_pull_policy,
                "command": ["/bin/sh", "-c", _FETCH[kind]],
                "env": [{"name": "SRC", "value": s.uri}, {"name": "DEST", "value": s.path},
                        {"name": "HOME", "value": "/tmp"}, {"name": "CLOUDSDK_CONFIG", "value": "/tmp/gcloud"}],
                "envFrom": [{"secretRef": {"name": config.storage_secret, "optional": True}}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                "securityContext": container_security_context(),
                "volumeMounts": [{"name": "fetch", "mountPath": f"{MOUNT_ROOT}/fetch"},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            })
    return out


def _http_probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2,
            "failureThreshold": failures}


# ----------------------------------------------------------------------------- objects

def service_account(plan: Plan, config: OperatorConfig) -> dict:
    m = plan.monitor
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(service_account_name(m.name), m.namespace, labels(m.name, version=config.image_tag)),
            "automountServiceAccountToken": False}


def needs_artifacts(plan: Plan, placement: KubePlacement) -> bool:
    return bool(plan.training) or bool(placement.stateful)


def artifacts_pvc(plan: Plan, placement: KubePlacement, config: OperatorConfig) -> dict:
    m = plan.monitor
    spec: dict = {"accessModes": [config.artifacts_access_mode],
                  "resources": {"requests": {"storage": config.artifacts_size}}}
    if config.artifacts_storage_class:
        spec["storageClassName"] = config.artifacts_storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(placement.artifacts_claim, m.namespace,
                              labels(m.name, role="artifacts", version=config.image_tag)),
            "spec": spec}


def config_map(component: Component, plan: Plan, config: OperatorConfig) -> dict:
    m = plan.monitor
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(component_name(m.name, component.name), m.namespace,
                              labels(m.name, component.name, version=config.image_tag),
                              {A_DIGEST: component.digest()}),
            "data": dict(sorted(component.env.items()))}


def service(component: Component, plan: Plan, config: OperatorConfig) -> dict:
    m = plan.monitor
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(component_name(m.name, component.name), m.namespace,
                              labels(m.name, component.name, version=config.image_tag)),
            "spec": {"type": "ClusterIP", "selector": selector(m.name, component.name),
                     "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}


def component_image(component: Component, config: OperatorConfig) -> str:
    if component.image_role == "custom" and component.image:
        return component.image
    return config.image(component.image_role)


def token_env(component: Component) -> list[dict]:
    """``VIGIL_TOKEN`` from ``spec.security.tokenSecret`` (DESIGN §11), for every pod of the monitor."""
    if component.token_secret is None:
        return []
    name, key = component.token_secret
    return [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]


def deployment(component: Component, plan: Plan, placement: KubePlacement, config: OperatorConfig) -> dict:
    m = plan.monitor
    name = component_name(m.name, component.name)
    custom = component.image_role == "custom"
    stateful = component.name in placement.stateful
    storage = storage_mounts(component.storage, config,
                             writable_claims=[placement.artifacts_claim] if stateful else ())
    tensorflow = component.needs_tensorflow
    env = [{"name": "HOME", "value": "/tmp"}]
    if component.image_role == "detectors" or tensorflow:
        env.append({"name": "TF_USE_LEGACY_KERAS", "value": "1"})
    env += token_env(component)
    container: dict = {
        "name": component.name,
        "image": component_image(component, config),
        "imagePullPolicy": config.image_pull_policy,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": name}}],
        "env": env,
        "resources": _resources(component.resources, config, tensorflow),
        # A user's V2 server answers the Open Inference Protocol health paths, ours /healthz and /readyz.
        "startupProbe": _http_probe("/v2/health/live" if custom else "/healthz", 5, 60),
        "livenessProbe": _http_probe("/v2/health/live" if custom else "/healthz", 10, 3),
        "readinessProbe": _http_probe("/v2/health/ready" if custom else "/readyz", 5, 3),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}] + storage.mounts,
    }
    if not custom:  # a user's image keeps its own entrypoint
        container["command"] = list(component.command)
    pod_labels = labels(m.name, component.name, version=config.image_tag)
    pod = {
        "metadata": {
            "labels": pod_labels,
            "annotations": {A_DIGEST: component.digest(), "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics",
                            "kubectl.kubernetes.io/default-container": component.name},
        },
        "spec": {
            "serviceAccountName": service_account_name(m.name),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(config),
            "terminationGracePeriodSeconds": 30,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}] + storage.volumes,
        },
    }
    if storage.init_containers:
        pod["spec"]["initContainers"] = storage.init_containers
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, m.namespace, pod_labels, {A_DIGEST: component.digest()}),
        "spec": {
            "replicas": component.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(m.name, component.name)},
            # A component with state on the (ReadWriteOnce) artifacts claim must not run twice.
            "strategy": {"type": "Recreate"} if stateful else {"type": "RollingUpdate"},
            "template": pod,
        },
    }


def train_command(step: TrainStep, plan: Plan) -> list[str]:
    """``vigil train`` for one detector, with in-pod paths (the same command line `vigil up` runs)."""
    return ["vigil", *train_argv(step, lambda uri: resolve(uri).path)]


def training_job(step: TrainStep, plan: Plan, placement: KubePlacement, config: OperatorConfig) -> dict:
    m = plan.monitor
    image = config.image("detectors")
    name = train_job_name(m.name, step, image)
    output = resolve(step.output_uri)
    storage = storage_mounts([step.reference_uri, step.model_uri, step.output_uri], config,
                             writable_claims=[output.claim] if output.claim else ())
    job_labels = labels(m.name, step.component, role="train", version=config.image_tag)
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "TF_USE_LEGACY_KERAS", "value": "1"}]
    container = {
        "name": "train", "image": image, "imagePullPolicy": config.image_pull_policy,
        "command": train_command(step, plan), "env": env,
        "envFrom": [{"secretRef": {"name": config.storage_secret, "optional": True}}],
        "resources": {"requests": {"cpu": "500m", "memory": config.tensorflow_memory_request}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}] + storage.mounts,
    }
    pod_spec: dict = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(m.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(config),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}] + storage.volumes,
    }
    if storage.init_containers:
        pod_spec["initContainers"] = storage.init_containers
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(name, m.namespace, job_labels, {A_DIGEST: _hash(step.__dict__, 16)}),
        "spec": {"backoffLimit": config.training_backoff_limit,
                 "activeDeadlineSeconds": config.training_deadline_seconds,
                 "template": {"metadata": {"labels": job_labels}, "spec": pod_spec}},
    }


def service_monitor(plan: Plan, config: OperatorConfig) -> dict:
    m = plan.monitor
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _meta(m.name, m.namespace, labels(m.name, role="monitoring", version=config.image_tag)),
            "spec": {"selector": {"matchLabels": {L_INSTANCE: m.name, L_MANAGED_BY: MANAGED_BY, L_ROLE: "serve"}},
                     "namespaceSelector": {"matchNames": [m.namespace]},
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}}


# ----------------------------------------------------------------------------- the whole set

@dataclass
class Rendered:
    """Everything one monitor wants to exist; deployments and jobs keyed by component."""

    objects: list[dict]  # ServiceAccount, PVC, ConfigMaps, Services, ServiceMonitor
    deployments: dict[str, dict]
    jobs: dict[str, dict]

    def all(self) -> list[dict]:
        return [*self.objects, *self.deployments.values(), *self.jobs.values()]


def render(plan: Plan, placement: KubePlacement, config: OperatorConfig) -> Rendered:
    """All objects for a plan (built with this same `placement`)."""
    objects = [service_account(plan, config)]
    if needs_artifacts(plan, placement):
        objects.append(artifacts_pvc(plan, placement, config))
    for c in plan.components:
        objects.append(config_map(c, plan, config))
        objects.append(service(c, plan, config))
    if plan.monitor.spec.prometheus.service_monitor:
        objects.append(service_monitor(plan, config))
    deployments = {c.name: deployment(c, plan, placement, config) for c in plan.components}
    jobs = {c.name: training_job(c.train, plan, placement, config) for c in plan.components if c.train}
    return Rendered(objects, deployments, jobs)
