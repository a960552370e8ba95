"""The Vigil operator running for real (kopf's reactor, in the test's event loop) against the
API emulator of `tests/kubeemu.py`, as its own least-privilege identity.

- `Cluster`: the emulator on a real loopback port, with our CRD installed, an admin
  client for the test, kubeconfigs for kubectl (admin) and for the operator (token
  ``operator``, allowed exactly the rules in ``operator/vigil_operator/rbac.yaml``).
- `running_operator`: `vigil_operator.runner.operate` as a task until the test ends.
- `Cluster.rollout` / `Cluster.finish_job`: what the deployment and job controllers
  would do in a cluster (the emulator has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Optional

import aiohttp
import kmock
import yaml

from tests import kubeemu

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "crds" / "modelmonitors.vigil.dev.yaml"
PEERING_CRDS = [ROOT / "charts" / "vigil" / "crds" / f for f in ("kopfpeerings.kopf.dev.yaml",
                                                                  "clusterkopfpeerings.kopf.dev.yaml")]
RBAC_RULES = yaml.safe_load((ROOT / "operator" / "vigil_operator" / "rbac.yaml").read_text())["rules"]
MM = "vigil.dev/v1alpha1/modelmonitors"
KINDS = {"ConfigMap": "v1/configmaps", "Service": "v1/services", "ServiceAccount": "v1/serviceaccounts",
         "PersistentVolumeClaim": "v1/persistentvolumeclaims", "Deployment": "apps/v1/deployments",
         "StatefulSet": "apps/v1/statefulsets",
         "Job": "batch/v1/jobs", "Event": "v1/events", "NetworkPolicy": "networking.k8s.io/v1/networkpolicies",
         "HorizontalPodAutoscaler": "autoscaling/v2/horizontalpodautoscalers",
         "PodDisruptionBudget": "policy/v1/poddisruptionbudgets"}
OPERATOR_TOKEN = "operator"


def load_example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


async def eventually(fn: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.05):
    """Poll `fn` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
            last = value
            if value:
                return value
        except (KeyError, AssertionError, TypeError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


class Cluster:
    def __init__(self, emu: kubeemu.KubeEmulator, url: str, session: aiohttp.ClientSession, workdir: Path):
        self.emu, self.url, self.session, self.workdir = emu, url, session, workdir
        self.admin_kubeconfig = kubeemu.kubeconfig(url, workdir / "admin.kubeconfig")
        self.operator_kubeconfig = kubeemu.kubeconfig(url, workdir / "operator.kubeconfig", token=OPERATOR_TOKEN)

    # -- the test's own API calls (as admin, through HTTP like any client) --------------------

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict:
        headers = {"Content-Type": content_type, "Authorization": "Bearer admin"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status >= 300:
                raise AssertionError(f"{method} {path} -> {r.status}: {data.get('message') if data else data}")
            return data

    @staticmethod
    def _path(doc_or_ns, name: Optional[str] = None) -> str:
        ns = doc_or_ns if isinstance(doc_or_ns, str) else doc_or_ns["metadata"].get("namespace", "default")
        base = f"/apis/vigil.dev/v1alpha1/namespaces/{ns}/modelmonitors"
        return f"{base}/{name}" if name else base

    async def create_monitor(self, doc: dict) -> dict:
        return await self._call("POST", self._path(doc), doc)

    async def patch_monitor(self, name: str, patch: dict, namespace: str = "default") -> dict:
        return await self._call("PATCH", self._path(namespace, name), patch, "application/merge-patch+json")

    async def delete_monitor(self, name: str, namespace: str = "default") -> dict:
        return await self._call("DELETE", self._path(namespace, name))

    # -- looking at the state ---------------------------------------------------------------

    def monitor(self, name: str, namespace: str = "default") -> Optional[dict]:
        return self.emu.get(MM, namespace, name)

    def status(self, name: str, namespace: str = "default") -> dict:
        return (self.monitor(name, namespace) or {}).get("status") or {}

    def objects(self, kind: str, namespace: str = "default", selector: str = "") -> dict[str, dict]:
        return {o["metadata"]["name"]: o for o in self.emu.list(KINDS[kind], namespace, selector)}

    def children(self, monitor: str, namespace: str = "default") -> dict[tuple[str, str], dict]:
        sel = f"app.kubernetes.io/instance={monitor},app.kubernetes.io/managed-by=vigil-operator"
        return {(kind, name): obj for kind in KINDS if kind != "Event"
                for name, obj in self.objects(kind, namespace, sel).items()}

    def events(self, namespace: str = "default", reason: Optional[str] = None) -> list[dict]:
        return [e for e in self.objects("Event", namespace).values() if reason is None or e.get("reason") == reason]

    def forbidden(self) -> list:
        """Requests the operator's RBAC rules did not allow."""
        return [e for e in self.emu.errors if getattr(e, "status", None) == 403 and "(RBAC)" in (e.message or "")]

    # -- what controllers would do -----------------------------------------------------------

    async def rollout(self, name: str, namespace: str = "default") -> None:
        """The deployment controller: all replicas of the current generation updated and available."""
        dep = self.emu.get(KINDS["Deployment"], namespace, name)
        n = dep["spec"].get("replicas", 1)
        await self.emu.set_status(KINDS["Deployment"], namespace, name, {
            "observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
            "readyReplicas": n, "availableReplicas": n})

    async def finish_job(self, name: str, namespace: str = "default", failed: bool = False) -> None:
        """The job controller: the Job's pod succeeded (or failed past its backoff limit)."""
        cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"} if failed else \
            {"type": "Complete", "status": "True"}
        status = {"failed": 3, "conditions": [cond]} if failed else {"succeeded": 1, "conditions": [cond]}
        await self.emu.set_status(KINDS["Job"], namespace, name, status)


@contextlib.asynccontextmanager
async def cluster(workdir: Path, **emu_kwargs) -> AsyncIterator[Cluster]:
    emu_kwargs.setdefault("rbac", {OPERATOR_TOKEN: RBAC_RULES})
    async with kubeemu.KubeEmulator(crds=[CRD, *PEERING_CRDS], **emu_kwargs) as emu, kmock.Server(emu) as server:
        async with aiohttp.ClientSession() as session:
            yield Cluster(emu, str(server.url).rstrip("/"), session, workdir)


@contextlib.asynccontextmanager
async def running_operator(c: Cluster, monkeypatch, *, namespace="default", runtime=None, liveness_port=None,
                           metrics_port=None, host="127.0.0.1", peering=None, **config):
    """Run the operator against `c` as its RBAC-limited identity until the block ends.

    It runs in its own thread and event loop, as in a process of its own: kopf's shutdown
    waits for every task of its loop, which must not include the emulator's.
    """
    import kubernetes.config.kube_config as kube_config

    from vigil_operator.config import OperatorConfig
    from vigil_operator.handlers import Runtime
    from vigil_operator.runner import operate

    # kopf's login (through the kubernetes client) reads the default kubeconfig location,
    # which the client fixed at import time: point both at the operator's kubeconfig.
    monkeypatch.setenv("KUBECONFIG", str(c.operator_kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(c.operator_kubeconfig))
    config.setdefault("status_interval", 0.3)
    config.setdefault("status_timeout", 0.5)
    runtime = runtime or Runtime(OperatorConfig(**config))
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def main():
        try:
            asyncio.run(operate(namespace, config=runtime.config, runtime=runtime, liveness_port=liveness_port,
                                metrics_port=metrics_port, host=host, stop_flag=stop, ready_flag=ready,
                                peering=peering))
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            failure.append(e)

    thread = threading.Thread(target=main, name="vigil-operator", daemon=True)
    thread.start()
    try:
        await eventually(lambda: ready.is_set() or failure, timeout=20, what="operator ready")
        assert not failure, failure
        yield runtime
    finally:
        stop.set()
        # Done once kopf has run the cleanup handler. kopf may then wait up to 5 s for a timer
        # it spawned while stopping (its "hung tasks" grace period); that idles harmlessly in
        # the background thread instead of delaying every test.
        await eventually(lambda: runtime.kube is None or not thread.is_alive(), timeout=20, what="operator stopped")
        assert not failure, failure


def deep(obj: dict, *path, default=None):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return default
        obj = obj[p]
    return obj


def snapshot(objs: dict) -> dict:
    """resourceVersions of a set of objects, to prove which were touched."""
    return {k: v["metadata"]["resourceVersion"] for k, v in copy.deepcopy(objs).items()}
