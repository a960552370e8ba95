"""Kubernetes objects for a monitor's plan: pure functions, no API calls.

Per component of the plan (`vigil.plan.Component`): a ConfigMap holding exactly its
``Component.env``, a Service on port 8080 and a Deployment running ``Component.command`` (a
StatefulSet for a detector whose replicas each consume a share of the JetStream partitions:
metrics with replicas > 1, each pod's ordinal picking its partitions).
Per monitor: a ServiceAccount (no API token mounted: components never call the
Kubernetes API; the pull secrets and annotations of the pod controls), the artifacts
claim when Vigil trains something into it, a state claim per stateful component, one
training Job per detector Vigil must train, a NetworkPolicy when the operator is asked
to, and a ServiceMonitor when the monitor asks. A component with ``autoscaling`` gets a
HorizontalPodAutoscaler (which then owns its replicas); one running more than one pod a
PodDisruptionBudget (minAvailable 1). Pod controls (`podcontrols`): the chart's
componentDefaults, then ``spec.pod``, then the component's ``pod`` block.

Storage (`vigil_operator.placement`): a pod's ``fetch`` init container (`vigil fetch`)
copies everything the component reads into the pod's own ``data`` volume, which the
component mounts read-only; only init containers mount a user's claim or a host path, and
read-only. A training Job fetches its inputs, trains into its ``out`` volume (an init
container) and uploads the artifact (its main container: the only writer of the
artifact location). No ReadWriteOnce claim the operator makes is mounted by two pods.
The one main container that mounts a user's claim is the logger's, writable, when it
captures to ``pvc://`` (`write_plan`; with more than one logger replica the claim must be
ReadWriteMany, each replica writing its own subdirectory).

Every pod meets the "restricted" Pod Security Standard: non-root uid, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystem
(``/tmp`` is an emptyDir); every container has requests and limits (measured defaults,
`OperatorConfig.resources`). Probes hit ``/healthz`` (liveness, startup) and ``/readyz``
(readiness). The pod template carries ``vigil.dev/digest`` (``Component.digest()``) so a
component's pods roll exactly when its inputs change, and the Prometheus scrape
annotations. Names never depend on the operator's image, so upgrading the operator
neither renames objects nor retrains; Deployment selectors hold ``vigil.dev/role: serve``
so a training Job's pods never match them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from vigil import components as registry
from vigil.auth import TOKEN_ENV
from vigil.plan import Component, Plan, TrainStep, train_argv
from vigil_operator import podcontrols
from vigil_operator.config import OperatorConfig, measured_resources
from vigil_operator.placement import (
    DATA_DIR,
    OUT_DIR,
    PORT,
    STATE_DIR,
    KubePlacement,
    Storage,
    claim_path,
    host_mount,
    resolve,
    write_claim_path,
    write_host_mount,
)

MANAGED_BY = "vigil-operator"
L_NAME, L_INSTANCE, L_COMPONENT = "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"
L_PART_OF, L_MANAGED_BY, L_VERSION = "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"
L_MONITOR, L_ROLE = "vigil.dev/monitor", "vigil.dev/role"
A_DIGEST = "vigil.dev/digest"  # Component.digest(): what shapes the component's pods
A_APPLIED = "vigil.dev/applied"  # hash of the whole rendered object: patch only when it changes
#: `vigil fetch` without the CLI's imports (13 MiB RSS for a local copy instead of 56; resources.yaml).
FETCH_COMMAND = ("python", "-m", "vigil.storage")
#: Detectors only the monitor's logger (and the operator, polling /status) need to reach.
PROTECTED = ("outlier", "drift", "quality", "metrics")


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
    """Deployment and Service selector: immutable once created, so only stable labels; the
    role keeps a training Job's pods (role ``train``) out of it."""
    return {L_NAME: "vigil", L_INSTANCE: monitor, L_COMPONENT: component, L_ROLE: "serve"}


def owned_selector(monitor: str) -> str:
    """Label selector for every object the operator made for one monitor."""
    return f"{L_INSTANCE}={monitor},{L_MANAGED_BY}={MANAGED_BY}"


def component_name(monitor: str, component: str) -> str:
    return f"{monitor}-{component}"


def service_account_name(monitor: str) -> str:
    return f"{monitor}-vigil"


def _hash(doc: Any, n: int) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:n]


def train_job_name(monitor: str, step: TrainStep) -> str:
    """Changes whenever the training inputs change, so a new Job (Jobs are immutable) trains
    again, and only then: never with the operator's image (an upgrade does not retrain)."""
    return f"{monitor}-{step.component}-train-{_hash(step.__dict__, 5)}"


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
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def resource_key(component: Component) -> str:
    """The row of resources.yaml a component's defaults come from: ``NAME-tensorflow`` when it
    loads TensorFlow for this monitor and that row exists (a TensorFlow model server, drift
    with UAE preprocessing), else ``NAME``."""
    if component.needs_tensorflow and f"{component.name}-tensorflow" in measured_resources():
        return f"{component.name}-tensorflow"
    return component.name


def train_resource_key(step: TrainStep) -> str:
    """``train-NAME``, or ``train-NAME-tensorflow`` when training loads a TensorFlow model file
    (the explainer fits against the model; against an endpoint it calls it over HTTP) and that
    row exists."""
    key = f"train-{step.component}"
    if step.model_uri and step.model_format == "tensorflow" and f"{key}-tensorflow" in measured_resources():
        return f"{key}-tensorflow"
    return key


def _resources(resources: dict, config: OperatorConfig, key: str) -> dict:
    if resources:
        return json.loads(json.dumps(resources))  # a copy the caller cannot mutate
    return config.resources(key)


def _vol_name(prefix: str, key: str) -> str:
    name = f"{prefix}-{key}".lower()
    return name if len(name) <= 63 and name.replace("-", "").isalnum() else f"{prefix}-{_hash(key, 10)}"


def pod_controls(plan: Plan, component: Optional[str], config: OperatorConfig) -> dict:
    """componentDefaults, then spec.pod, then the component's own pod block (`podcontrols`)."""
    spec = plan.monitor.spec
    layers = [_dump(getattr(spec, "pod", None))]
    if component:
        layers.append(_dump(getattr(component_block(plan, component), "pod", None)))
    return podcontrols.merge(config.component_defaults, *layers)


def component_block(plan: Plan, component: str):
    spec = plan.monitor.spec
    if component in ("model", "logger"):
        return getattr(spec, component)
    return getattr(spec.detectors, component, None)


def _dump(block) -> dict:
    if block is None:
        return {}
    if hasattr(block, "model_dump"):
        return block.model_dump(by_alias=True, exclude_none=True)
    return dict(block)


def storage_secret(plan: Plan, config: OperatorConfig) -> dict:
    """envFrom of every container that reads or writes storage: the monitor's Secret
    (``spec.storage.secretName``), else the operator's default, optional either way."""
    storage = getattr(plan.monitor.spec, "storage", None)
    name = getattr(storage, "secret_name", None) or config.storage_secret
    return {"secretRef": {"name": name, "optional": True}}


@dataclass
class Fetch:
    """The volumes and init container that put a set of storage URIs into a pod's data volume."""

    volumes: list = field(default_factory=list)
    init_mounts: list = field(default_factory=list)  # sources, read-only
    pairs: list = field(default_factory=list)  # [SRC, DEST, ...] for `vigil fetch`


def fetch_plan(uris: Iterable[Optional[str]]) -> Fetch:
    out = Fetch()
    resolved: list[Storage] = [resolve(u) for u in dict.fromkeys(u for u in uris if u)]
    for claim in dict.fromkeys(s.claim for s in resolved if s.claim):
        name = _vol_name("src-pvc", claim)
        out.volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        out.init_mounts.append({"name": name, "mountPath": claim_path(claim), "readOnly": True})
    for host in dict.fromkeys(s.host_path for s in resolved if s.host_path):
        name = _vol_name("src-host", _hash(host, 10))
        out.volumes.append({"name": name, "hostPath": {"path": host}})
        out.init_mounts.append({"name": name, "mountPath": host_mount(host), "readOnly": True})
    for s in resolved:
        out.pairs += [s.source, s.path]
    return out


def write_plan(uris: Iterable[str]) -> tuple[list[dict], list[dict], bool]:
    """(volumes, container mounts, writes remote storage) of what a component writes (capture):
    a claim or host path mounted writable where `KubePlacement.write_uri` points."""
    volumes: list[dict] = []
    mounts: list[dict] = []
    resolved = [resolve(u) for u in dict.fromkeys(uris)]
    for claim_name in dict.fromkeys(s.claim for s in resolved if s.claim):
        name = _vol_name("dst-pvc", claim_name)
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim_name}})
        mounts.append({"name": name, "mountPath": write_claim_path(claim_name)})
    for host in dict.fromkeys(s.host_path for s in resolved if s.host_path):
        name = _vol_name("dst-host", _hash(host, 10))
        volumes.append({"name": name, "hostPath": {"path": host, "type": "DirectoryOrCreate"}})
        mounts.append({"name": name, "mountPath": write_host_mount(host)})
    return volumes, mounts, any(s.remote for s in resolved)


def fetch_container(pairs: list[str], mounts: list[dict], image: str, plan: Plan, config: OperatorConfig,
                    name: str = "fetch", writes: Optional[list[dict]] = None) -> dict:
    """`vigil fetch` with the given SRC/DEST pairs."""
    return {
        "name": name, "image": image, "imagePullPolicy": config.image_pull_policy,
        "command": [*FETCH_COMMAND, *pairs],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "envFrom": [storage_secret(plan, config)],
        "resources": config.resources("fetch"),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(writes or []), *mounts],
    }


def _http_probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2,
            "failureThreshold": failures}


def _pod_spec(plan: Plan, config: OperatorConfig, containers: list, volumes: list, init: list) -> dict:
    spec: dict = {
        "serviceAccountName": service_account_name(plan.monitor.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(config),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }
    if init:
        spec["initContainers"] = init
    return spec


# ----------------------------------------------------------------------------- objects

def service_account(plan: Plan, config: OperatorConfig) -> dict:
    m = plan.monitor
    # One ServiceAccount serves every component of the monitor: its annotations are those of
    # the defaults and spec.pod, then of each component's pod block (in port order).
    annotations = dict(pod_controls(plan, None, config).get("serviceAccountAnnotations") or {})
    for c in plan.components:
        annotations.update(pod_controls(plan, c.name, config).get("serviceAccountAnnotations") or {})
    meta = _meta(service_account_name(m.name), m.namespace, labels(m.name, version=config.image_tag),
                 annotations or None)
    out = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False}
    # Every pull secret any component's pods use (the pods name theirs too: this is for tools
    # that look only at the service account).
    secrets = podcontrols.merge(config.component_defaults, *[
        {"imagePullSecrets": pod_controls(plan, c.name, config).get("imagePullSecrets", [])}
        for c in plan.components]).get("imagePullSecrets")
    if secrets:
        out["imagePullSecrets"] = secrets
    return out


def claim(name: str, plan: Plan, config: OperatorConfig, access_mode: str, size: str, role: str) -> dict:
    m = plan.monitor
    spec: dict = {"accessModes": [access_mode], "resources": {"requests": {"storage": size}}}
    if config.artifacts_storage_class:
        spec["storageClassName"] = config.artifacts_storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(name, m.namespace, labels(m.name, role=role, version=config.image_tag)),
            "spec": spec}


def claims(plan: Plan, placement: KubePlacement, config: OperatorConfig) -> list[dict]:
    """The artifacts claim (when something is trained into it) and one state claim per stateful component."""
    out = []
    if plan.training and placement.artifacts_claim:
        out.append(claim(placement.artifacts_claim, plan, config, config.artifacts_access_mode,
                         config.artifacts_size, "artifacts"))
    for component in sorted(placement.stateful):
        if plan.get(component):
            out.append(claim(placement.state_claim(component), plan, config, "ReadWriteOnce", config.state_size,
                             "state"))
    return out


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
    tensorflow = component.needs_tensorflow
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if component.image_role == "detectors" or tensorflow:
        env.append({"name": "TF_USE_LEGACY_KERAS", "value": "1"})
    env += token_env(component)
    mounts: list[dict] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list = []
    init: list = []
    fetch = fetch_plan(component.storage)
    if fetch.pairs:
        volumes += [{"name": "data", "emptyDir": {}}, *fetch.volumes]
        mounts.append({"name": "data", "mountPath": DATA_DIR, "readOnly": True})
        # Our images carry `vigil fetch`; a user's model image may not: fetch with the server image.
        image = config.image("server") if custom else component_image(component, config)
        init.append(fetch_container(fetch.pairs, fetch.init_mounts, image, plan, config,
                                    writes=[{"name": "data", "mountPath": DATA_DIR}]))
    if stateful:
        volumes.append({"name": "state", "persistentVolumeClaim": {"claimName": placement.state_claim(component.name)}})
        mounts.append({"name": "state", "mountPath": STATE_DIR})
    write_volumes, write_mounts, writes_remote = write_plan(component.writes)
    volumes += write_volumes
    mounts += write_mounts
    partitioned = partitioned_replicas(component) is not None
    if component.writes or partitioned:
        # capture: one subdirectory per replica (vigil.logger.settings.pod_name); a partitioned detector: the
        # StatefulSet ordinal ending the pod's name picks its share of the partitions (DetectorSettings.own_partitions)
        env.append({"name": f"{registry.get(component.name).env_prefix}POD_NAME",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    container: dict = {
        "name": component.name,
        "image": component_image(component, config),
        "imagePullPolicy": config.image_pull_policy,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # a component writing s3:// or gs:// (capture) reads the storage Secret's credentials too
        "envFrom": [{"configMapRef": {"name": name}}, *([storage_secret(plan, config)] if writes_remote else [])],
        "env": env,
        "resources": _resources(component.resources, config, resource_key(component)),
        # A user's V2 server answers the Open Inference Protocol health paths, ours /healthz and /readyz.
        "startupProbe": _http_probe("/v2/health/live" if custom else "/healthz", 5, 60),
        "livenessProbe": _http_probe("/v2/health/live" if custom else "/healthz", 10, 3),
        "readinessProbe": _http_probe("/v2/health/ready" if custom else "/readyz", 5, 3),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    if not custom:  # a user's image keeps its own entrypoint
        container["command"] = list(component.command)
    pod_labels = labels(m.name, component.name, version=config.image_tag)
    spec = _pod_spec(plan, config, [container], volumes, init)
    spec["terminationGracePeriodSeconds"] = 30
    pod = podcontrols.apply({
        "metadata": {
            "labels": pod_labels,
            "annotations": {A_DIGEST: component.digest(), "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics",
                            "kubectl.kubernetes.io/default-container": component.name},
        },
        "spec": spec,
    }, pod_controls(plan, component.name, config))
    spec = {
        "replicas": component.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector(m.name, component.name)},
        # A component with a (ReadWriteOnce) state claim must never run in two pods.
        "strategy": {"type": "Recreate"} if stateful else {"type": "RollingUpdate"},
        "template": pod,
    }
    if autoscaling(plan, component.name):
        del spec["replicas"]  # the HorizontalPodAutoscaler owns it
    kind = "Deployment"
    if partitioned:  # a stable ordinal per pod: replica i consumes its own partitions (no state claim: not stateful)
        kind = "StatefulSet"
        del spec["strategy"]
        spec.update(serviceName=name, podManagementPolicy="Parallel", updateStrategy={"type": "RollingUpdate"})
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": _meta(name, m.namespace, pod_labels, {A_DIGEST: component.digest()}), "spec": spec}


def partitioned_replicas(component: Component) -> Optional[int]:
    """Replicas of a detector that each consume a share of the JetStream partitions (metrics with
    replicas > 1, DESIGN §13): rendered as a StatefulSet so each pod knows its ordinal. None otherwise."""
    return getattr(component.settings, "consumer_replicas", None)


def autoscaling(plan: Plan, component: str):
    """The component's ``autoscaling`` block (logger, model, outlier), or None."""
    return getattr(component_block(plan, component), "autoscaling", None)


def horizontal_pod_autoscaler(component: Component, plan: Plan, config: OperatorConfig) -> Optional[dict]:
    block = autoscaling(plan, component.name)
    if block is None:
        return None
    m = plan.monitor
    name = component_name(m.name, component.name)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, m.namespace, labels(m.name, component.name, role="scale", version=config.image_tag)),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": block.min_replicas, "maxReplicas": block.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": block.target_cpu_utilization_percentage}}}]}}


def pod_disruption_budget(component: Component, plan: Plan, config: OperatorConfig) -> Optional[dict]:
    """minAvailable 1 for a component that runs more than one pod (replicas, or autoscaling's
    minReplicas, above 1): a drain never takes all of them at once, and never blocks on one."""
    block = autoscaling(plan, component.name)
    least = block.min_replicas if block is not None else component.replicas
    if least <= 1:
        return None
    m = plan.monitor
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(component_name(m.name, component.name), m.namespace,
                              labels(m.name, component.name, role="disruption", version=config.image_tag)),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector(m.name, component.name)}}}


def train_command(step: TrainStep, plan: Plan) -> list[str]:
    """``vigil train`` for one detector, with in-pod paths (the same command line `vigil up` runs);
    it writes to the Job's ``out`` volume, uploaded afterwards."""
    out = f"{OUT_DIR}/{step.component}"
    return ["vigil", *train_argv(step, lambda uri: out if uri == step.output_uri else resolve(uri).path)]


def upload_target(step: TrainStep) -> tuple[str, list[dict], list[dict]]:
    """(DEST for `vigil fetch`, volumes, mounts) of the artifact location; a claim is mounted
    writable in the upload container only."""
    out = resolve(step.output_uri)
    if out.claim:
        name = _vol_name("dst-pvc", out.claim)
        return (claim_path(out.claim, out.sub), [{"name": name, "persistentVolumeClaim": {"claimName": out.claim}}],
                [{"name": name, "mountPath": claim_path(out.claim)}])
    return step.output_uri, [], []


def training_job(step: TrainStep, plan: Plan, placement: KubePlacement, config: OperatorConfig) -> dict:
    m = plan.monitor
    image = config.image("detectors")
    name = train_job_name(m.name, step)
    fetch = fetch_plan([step.reference_uri, step.model_uri])
    dest, dest_volumes, dest_mounts = upload_target(step)
    data_ro = {"name": "data", "mountPath": DATA_DIR, "readOnly": True}
    tmp = {"name": "tmp", "mountPath": "/tmp"}
    job_labels = labels(m.name, step.component, role="train", version=config.image_tag)
    init = [fetch_container(fetch.pairs, fetch.init_mounts, image, plan, config,
                            writes=[{"name": "data", "mountPath": DATA_DIR}])] if fetch.pairs else []
    init.append({
        "name": "train", "image": image, "imagePullPolicy": config.image_pull_policy,
        "command": train_command(step, plan),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TF_USE_LEGACY_KERAS", "value": "1"}],
        "resources": config.resources(train_resource_key(step)),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp, data_ro, {"name": "out", "mountPath": OUT_DIR}],
    })
    upload = fetch_container([f"{OUT_DIR}/{step.component}", dest], dest_mounts, image, plan, config,
                             name="upload", writes=[{"name": "out", "mountPath": OUT_DIR, "readOnly": True}])
    volumes = [{"name": "data", "emptyDir": {}}, {"name": "out", "emptyDir": {}}, *fetch.volumes, *dest_volumes]
    pod_spec = _pod_spec(plan, config, [upload], volumes, init)
    pod_spec["restartPolicy"] = "Never"
    template = podcontrols.apply({"metadata": {"labels": job_labels}, "spec": pod_spec},
                                 pod_controls(plan, step.component, config))
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(name, m.namespace, job_labels, {A_DIGEST: _hash(step.__dict__, 16)}),
        "spec": {"backoffLimit": config.training_backoff_limit,
                 "activeDeadlineSeconds": config.training_deadline_seconds,
                 "template": template},
    }


def network_policy(plan: Plan, config: OperatorConfig) -> Optional[dict]:
    """Only the monitor's logger, the operator's namespace and `network_policy_from` reach
    its detector pods (outlier, drift, quality, metrics)."""
    m = plan.monitor
    protected = [c.name for c in plan.components if c.name in PROTECTED]
    if not protected:
        return None
    peers: list = [{"podSelector": {"matchLabels": selector(m.name, "logger")}}]
    if config.operator_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}}})
    peers += json.loads(json.dumps(config.network_policy_from))
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(f"{m.name}-detectors", m.namespace, labels(m.name, role="network", version=config.image_tag)),
            "spec": {"podSelector": {"matchLabels": {L_INSTANCE: m.name, L_ROLE: "serve"},
                                     "matchExpressions": [{"key": L_COMPONENT, "operator": "In",
                                                           "values": protected}]},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}]}}


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

    objects: list[dict]  # ServiceAccount, PVCs, ConfigMaps, Services, HPAs, PDBs, NetworkPolicy, ServiceMonitor
    deployments: dict[str, dict]
    jobs: dict[str, dict]

    def all(self) -> list[dict]:
        return [*self.objects, *self.deployments.values(), *self.jobs.values()]


def render(plan: Plan, placement: KubePlacement, config: OperatorConfig) -> Rendered:
    """All objects for a plan (built with this same `placement`)."""
    objects = [service_account(plan, config), *claims(plan, placement, config)]
    for c in plan.components:
        objects.append(config_map(c, plan, config))
        objects.append(service(c, plan, config))
        objects += [o for o in (horizontal_pod_autoscaler(c, plan, config), pod_disruption_budget(c, plan, config)) if o]
    if config.network_policy:
        policy = network_policy(plan, config)
        if policy:
            objects.append(policy)
    if plan.monitor.spec.prometheus.service_monitor:
        objects.append(service_monitor(plan, config))
    deployments = {c.name: deployment(c, plan, placement, config) for c in plan.components}
    jobs = {c.name: training_job(c.train, plan, placement, config) for c in plan.components if c.train}
    return Rendered(objects, deployments, jobs)
