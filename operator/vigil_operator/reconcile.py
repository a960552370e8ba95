"""Converge the cluster to one monitor's spec: create, patch, or delete its children.

`converge` is level-triggered and idempotent: it validates the spec, builds the plan
(`vigil.plan.build_plan` with a `KubePlacement`), renders every object
(`vigil_operator.manifests`), adopts them (owner references to the monitor, so the
cluster's garbage collector removes them with it), and then, per object:

- absent -> create;
- present with the same ``vigil.dev/applied`` hash -> left alone (no request at all),
  which is why changing one detector rolls only that detector;
- present with another hash -> merge-patched with ``metadata.resourceVersion`` set, so
  a concurrent writer makes the patch fail with 409 instead of being overwritten;
- labelled as this monitor's but no longer rendered (a removed detector block, an
  outdated training Job) -> deleted.

A detector Vigil must train gets its training Job first; its Deployment is created only
once the Job has succeeded (until then the monitor's phase is ``Training``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, cast

import kopf

from vigil import components
from vigil.plan import Plan, build_plan
from vigil.spec import API_GROUP, API_VERSION, KIND, ModelMonitor, SpecError, monitor_from_dict
from vigil_operator import addresses, manifests
from vigil_operator.config import OperatorConfig
from vigil_operator.kube import ApiError, Kube
from vigil_operator.placement import ARTIFACT_SCHEMES, KubePlacement, resolve

#: Kinds the operator lists (by label) to find what it made; PVCs are never pruned (they
#: hold trained artifacts and go with the monitor), ServiceMonitors only if the CRD exists.
MANAGED_KINDS = ("ServiceAccount", "ConfigMap", "Service", "Deployment", "StatefulSet", "Job", "NetworkPolicy",
                 "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PersistentVolumeClaim")
CREATE_ONLY = ("PersistentVolumeClaim", "Job")  # immutable specs
NEVER_PRUNE = ("PersistentVolumeClaim",)

SUCCEEDED, RUNNING, FAILED = "Succeeded", "Running", "Failed"


class Rejected(Exception):
    """The API server refused an object rendered from the spec (e.g. a bad resources quantity),
    or a name is taken by an object this monitor does not own: the user must change something."""


@dataclass
class Converged:
    monitor: ModelMonitor
    plan: Plan
    placement: KubePlacement
    training: dict[str, str] = field(default_factory=dict)  # component -> Running|Succeeded|Failed
    training_jobs: dict[str, str] = field(default_factory=dict)  # component -> Job name
    training_messages: dict[str, str] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)  # Deployments waiting for their training Job
    deployments: dict[str, Optional[dict]] = field(default_factory=dict)  # component -> live object
    actions: dict[str, str] = field(default_factory=dict)  # "Kind/name" -> created|patched|unchanged|deleted
    warnings: list[str] = field(default_factory=list)


def monitor_document(body: Mapping[str, Any]) -> dict:
    meta = body.get("metadata") or {}
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
            "spec": copy.deepcopy(dict(body.get("spec") or {}))}


HOST_PATH_REFUSED = ("file:// storage mounts a path of the node (hostPath) and is refused: the operator runs "
                     "without --allow-host-path; use pvc://, s3://, gs:// or https://")


def storage_uris(monitor: ModelMonitor) -> dict[str, str]:
    """Every storage URI of the spec, by the field that holds it."""
    s = monitor.spec
    uris = {"spec.model.storageUri": s.model.storage_uri,
            "spec.reference.storageUri": s.reference.storage_uri if s.reference else None}
    for row in components.detectors():
        block = getattr(s.detectors, row.name, None)
        uris[f"spec.detectors.{row.name}.storageUri"] = getattr(block, "storage_uri", None)
    storage = getattr(s, "storage", None)
    uris["spec.storage.artifactsUri"] = getattr(storage, "artifacts_uri", None)
    capture = getattr(s.logger, "capture", None)
    uris["spec.logger.capture.storageUri"] = capture.storage_uri if capture else None
    return {k: v for k, v in uris.items() if v}


def load(body: Mapping[str, Any], config: Optional[OperatorConfig] = None) -> ModelMonitor:
    """The monitor as the shared spec model; SpecError names the bad field, also for storage URIs
    that mean nothing in a cluster (relative paths) or that the operator refuses (host paths
    without ``allow_host_path``; an artifacts location nothing can be uploaded to). (Values a
    service would reject are SpecErrors from `build_plan`, which `Reconciler.converge` runs
    before it writes anything.)"""
    monitor = monitor_from_dict(monitor_document(body))
    allow_host_path = bool(config and config.allow_host_path)
    for field_name, uri in storage_uris(monitor).items():
        try:
            where = resolve(uri)
        except ValueError as e:
            raise SpecError(field_name, str(e)) from None
        if where.scheme == "file" and not allow_host_path:
            raise SpecError(field_name, HOST_PATH_REFUSED)
        if field_name == "spec.storage.artifactsUri":
            if where.scheme not in ARTIFACT_SCHEMES:
                raise SpecError(field_name, f"trained artifacts can be uploaded to {', '.join(ARTIFACT_SCHEMES)}:// "
                                            f"only, not {where.scheme}://")
            if where.archive:
                raise SpecError(field_name, "must name a directory, not an archive")
    return monitor


async def check_addresses(monitor: ModelMonitor, api_hosts: set[str]) -> None:
    """SpecError when an http(s) storage URI or the model endpoint points at a refused host
    (`vigil_operator.addresses`)."""
    targets = {k: v for k, v in storage_uris(monitor).items() if v.startswith(("http://", "https://"))}
    if monitor.spec.model.endpoint:
        targets["spec.model.endpoint"] = monitor.spec.model.endpoint
    for field_name, url in targets.items():
        reason = await addresses.check_url(url, api_hosts)
        if reason:
            raise SpecError(field_name, f"refused: {reason}")


def job_state(job: dict) -> tuple[str, str]:
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return SUCCEEDED, ""
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return FAILED, cond.get("message") or cond.get("reason") or "job failed"
    if (status.get("succeeded") or 0) >= 1:
        return SUCCEEDED, ""
    return RUNNING, ""


# Maps in which a key we no longer render must be removed explicitly (a merge patch keeps
# keys it does not mention): ConfigMap data (a dropped env var), our own annotations, the
# init containers of a component whose storage moved off a remote URI, and rollingUpdate
# when a Deployment switches to Recreate.
def _nullable(path: tuple, key: str) -> bool:
    if path == ("data",):
        return True
    if path in (("metadata", "annotations"), ("spec", "template", "metadata", "annotations")):
        return key.startswith(("vigil.dev/", "prometheus.io/"))
    if path == ("spec", "template", "spec"):
        return key == "initContainers"
    if path == ("spec", "strategy"):
        return key == "rollingUpdate"
    return False


def merge_patch(live: Mapping, desired: Mapping, path: tuple = ()) -> dict:
    """The JSON merge patch (RFC 7386) that turns `live` into `desired` for the fields we own."""
    out: dict = {}
    for key, want in desired.items():
        have = live.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            sub = merge_patch(have, want, path + (key,))
            if sub:
                out[key] = sub
        elif have != want:
            out[key] = want
    for key in live:
        if key not in desired and _nullable(path, key):
            out[key] = None
    return out


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config

    async def _existing(self, monitor: ModelMonitor) -> dict[str, dict[str, dict]]:
        selector = manifests.owned_selector(monitor.name)
        found: dict[str, dict[str, dict]] = {}
        for kind in MANAGED_KINDS:
            try:
                items = await self.kube.list(kind, monitor.namespace, selector)
            except ApiError as e:
                if kind == "ServiceMonitor" and e.status == 404:  # Prometheus Operator not installed
                    items = []
                else:
                    raise
            found[kind] = {o["metadata"]["name"]: o for o in items}
        return found

    async def _apply(self, obj: dict, existing: dict[str, dict[str, dict]], owner_uid: str,
                     result: Converged) -> Optional[dict]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        key = f"{kind}/{name}"
        manifests.stamp(obj)
        live = existing.get(kind, {}).get(name)
        if live is None:
            try:
                created = await self.kube.create(obj)
                result.actions[key] = "created"
                return created
            except ApiError as e:
                if e.status == 404 and kind == "ServiceMonitor":
                    result.warnings.append("spec.prometheus.serviceMonitor is set but the ServiceMonitor CRD "
                                           "(Prometheus Operator) is not installed")
                    result.actions[key] = "unsupported"
                    return None
                if e.status in (400, 403, 422):
                    raise Rejected(f"{kind} {name} was rejected: {e.message}") from None
                if e.status != 409:
                    raise
                live = await self.kube.get(kind, obj["metadata"]["namespace"], name)
                if live is None:
                    raise  # created and deleted under our feet: let the caller retry
                owners = [r.get("uid") for r in live["metadata"].get("ownerReferences") or []]
                if owner_uid not in owners:
                    raise Rejected(f"{kind} {name} already exists and is not owned by this monitor; "
                                   f"delete or rename it") from None
        applied = obj["metadata"]["annotations"][manifests.A_APPLIED]
        if (live["metadata"].get("annotations") or {}).get(manifests.A_APPLIED) == applied:
            result.actions[key] = "unchanged"
            return live
        if kind in CREATE_ONLY:
            result.actions[key] = "unchanged"
            return live
        if kind in ("Deployment", "StatefulSet") and (live.get("spec") or {}).get("selector") != obj["spec"]["selector"]:
            # A selector is immutable (made by an older operator): replace the Deployment.
            await self.kube.delete(kind, obj["metadata"]["namespace"], name)
            created = await self.kube.create(obj)
            result.actions[key] = "replaced"
            return created
        patch = merge_patch(live, obj)
        patch.setdefault("metadata", {})["resourceVersion"] = live["metadata"].get("resourceVersion")
        try:
            patched = await self.kube.patch(obj, patch)
        except ApiError as e:
            if e.status in (400, 403, 422):
                raise Rejected(f"{kind} {name} was rejected: {e.message}") from None
            raise
        result.actions[key] = "patched"
        return patched

    async def converge(self, body: Mapping[str, Any]) -> Converged:
        """Make the cluster match `body` (a ModelMonitor). Raises SpecError, Rejected or ApiError."""
        monitor = load(body, self.config)
        await check_addresses(monitor, addresses.api_server_hosts(self.kube.host))
        storage = getattr(monitor.spec, "storage", None)
        placement = KubePlacement(monitor.name, monitor.namespace,
                                  artifacts_uri=getattr(storage, "artifacts_uri", None), nats_url=self.config.nats_url)
        plan = build_plan(monitor, placement)
        rendered = manifests.render(plan, placement, self.config)
        kopf.adopt(rendered.all(), owner=kopf.Body(cast(kopf.RawBody, dict(body))))
        owner_uid = str((body.get("metadata") or {}).get("uid") or "")
        result = Converged(monitor=monitor, plan=plan, placement=placement)
        if monitor.spec.prometheus.rules:
            result.warnings.append("spec.prometheus.rules: the operator makes no per-monitor PrometheusRule; the Helm "
                                   "chart's PrometheusRule (monitoring.prometheusRule.enabled) alerts on every monitor")
        existing = await self._existing(monitor)

        for obj in rendered.objects:
            await self._apply(obj, existing, owner_uid, result)

        for component, job in rendered.jobs.items():
            name = job["metadata"]["name"]
            result.training_jobs[component] = name
            live = existing["Job"].get(name)
            if live is None:
                await self._apply(job, existing, owner_uid, result)
                result.training[component] = RUNNING
            else:
                state, message = job_state(live)
                result.training[component] = state
                if message:
                    result.training_messages[component] = message

        for component, dep in rendered.deployments.items():
            name = dep["metadata"]["name"]
            if result.training.get(component, SUCCEEDED) != SUCCEEDED:
                result.deferred.append(component)
                result.deployments[component] = existing[dep["kind"]].get(name)
                continue
            result.deployments[component] = await self._apply(dep, existing, owner_uid, result)

        keep = {(o["kind"], o["metadata"]["name"]) for o in rendered.all()}
        for kind, objects in existing.items():
            if kind in NEVER_PRUNE:
                continue
            for name in objects:
                if (kind, name) not in keep:
                    if await self.kube.delete(kind, monitor.namespace, name):
                        result.actions[f"{kind}/{name}"] = "deleted"
        return result
