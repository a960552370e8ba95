"""The Kubernetes path end to end, every pod a set of isolated processes (DESIGN §12
"Tested as pods", issue 12 item 7): ``kubectl apply`` a monitor → the operator (kopf,
against the API emulator, as its RBAC-limited identity) renders its objects → the pod
runner (tests/podrunner.py) runs each Deployment's and Job's containers exactly as
rendered (command, env, mounts, read-only root, uid 65532, no capabilities, a network
namespace per pod with Service names in its /etc/hosts) → traffic through the logger's
pod → a drifted window → ``kubectl get monitors`` shows ``DRIFT true``.

- a tabular monitor with every detector (outlier, drift, quality, metrics, explainer):
  the outlier and explainer training Jobs run to completion first, their detectors fetch
  what the Jobs uploaded;
- an endpoint monitor (the model is someone else's Deployment in namespace ``prod``) with
  an explainer, whose training Job calls that endpoint by its Service name.

Nothing here rewrites an address or a path: the operator polls each component's /status
at its pod's IP (what its Service resolves to, `PodRunner.url`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from tests.operator_harness import cluster, eventually, running_operator
from tests.podrunner import PodRunner, available
from tests.tools import kubectl_path
from vigil.events import v2_request

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.tensorflow,
              pytest.mark.skipif(available() is not None, reason=f"isolated pods: {available()}")]

FEATURES = ["a", "b", "c"]
WINDOW = 100
TRAINING = 900  # seconds: TensorFlow training Jobs on 2 shared cores
POLL = {"status_timeout": 2.0, "status_interval": 1.0}  # the operator's default /status timeout


async def kubectl(c, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(c.admin_kubeconfig), "HOME": str(c.workdir)})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def kubectl_row(c) -> dict:
    header, row = (await kubectl(c, "get", "monitors")).strip().splitlines()
    return dict(zip(header.split(), row.split(), strict=False))


def user_files(runner: PodRunner, namespace: str, sub: str) -> np.random.Generator:
    """A model and reference data on the user's claim ``models`` (the test writes the volume)."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1000, 3))
    where = runner.claim_dir(namespace, "models") / sub
    where.mkdir(parents=True)
    pd.DataFrame(ref, columns=FEATURES).to_csv(where / "reference.csv", index=False)
    joblib.dump(LogisticRegression().fit(ref, (ref[:, 0] > 0).astype(int)), where / "model.joblib")
    return rng


async def models_claim(c, namespace: str) -> None:
    await c._call("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": namespace},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}})


def status_urls(runner: PodRunner, monitor: str, components) -> dict[str, str]:
    return {f"default/{monitor}/{name}": runner.url("default", f"{monitor}-{name}") for name in components}


def pod_logs(runner: PodRunner) -> str:
    return "\n".join(f"--- {p.parent.name}/{p.name}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted((runner.workdir / "pods").glob("*/*.log")))


async def ready(c, runner: PodRunner, name: str, timeout: float) -> dict:
    def check():
        # RuntimeError, not AssertionError: `eventually` retries the latter, these are final
        if runner.crashes or runner.violations:
            raise RuntimeError("\n".join([*runner.crashes, *runner.violations]))
        s = c.status(name)
        if s.get("phase") == "Failed":
            raise RuntimeError(f"{name} Failed: {s.get('message')}\n{pod_logs(runner)}")
        return s.get("phase") == "Ready" and s
    try:
        return await eventually(check, timeout=timeout, interval=1.0, what=f"{name} Ready")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {c.status(name)}\nlogs:\n{pod_logs(runner)}") from None


async def drift_after(c, client: httpx.AsyncClient, rng, name: str, model: str) -> dict:
    async def infer(rows):
        for i in range(0, len(rows), 10):
            r = await client.post(f"/v2/models/{model}/infer", json=v2_request(rows[i:i + 10]))
            assert r.status_code == 200, r.text

    await infer(rng.normal(size=(WINDOW, 3)))  # like the reference: no drift
    status = await eventually(lambda: (c.status(name).get("drift") or {}).get("windows") == 1 and c.status(name),
                              timeout=120, interval=0.5, what="one drift window checked")
    assert status["drift"]["detected"] is False
    shifted = rng.normal(size=(WINDOW, 3))
    shifted[:, 2] += 3.0  # feature c moves
    await infer(shifted)
    return await eventually(lambda: (c.status(name).get("drift") or {}).get("windows") == 2 and c.status(name),
                            timeout=120, interval=0.5, what="the drifted window checked")


async def test_tabular_monitor_with_every_detector_runs_as_pods(tmp_path, monkeypatch):
    components = ["model", "logger", "outlier", "drift", "quality", "metrics", "explainer"]
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
           "metadata": {"name": "iris", "namespace": "default"},
           "spec": {"model": {"storageUri": "pvc://models/iris/model.joblib", "name": "iris"},
                    "schema": {"featureNames": FEATURES},
                    "reference": {"storageUri": "pvc://models/iris/reference.csv"},
                    "detectors": {"outlier": {"type": "vae", "epochs": 2},
                                  "drift": {"pValue": 0.05, "window": {"size": WINDOW, "maxAge": "1h"}},
                                  "quality": {"window": {"size": WINDOW}},
                                  "metrics": {"task": "classification", "classes": [0, 1]},
                                  "explainer": {"type": "anchor-tabular", "threshold": 0.9}}}}
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(doc))
    async with cluster(tmp_path) as c, PodRunner(c.emu, tmp_path / "run") as runner, \
            running_operator(c, monkeypatch, status_urls=status_urls(runner, "iris", components), **POLL):
        await models_claim(c, "default")
        rng = user_files(runner, "default", "iris")
        out = await kubectl(c, "apply", "-f", str(tmp_path / "monitor.yaml"))
        assert out.strip() == "modelmonitor.vigil.dev/iris created"

        status = await ready(c, runner, "iris", TRAINING)
        assert status["components"] == dict.fromkeys(components, "Ready")
        assert status["training"] == {"outlier": "Succeeded", "explainer": "Succeeded"}
        assert sorted(runner.finished) == sorted(n for n in c.objects("Job")) and set(runner.finished.values()) == {0}
        row = await kubectl_row(c)
        assert (row["PHASE"], row["DRIFT"]) == ("Ready", "false")

        async with httpx.AsyncClient(base_url=runner.url("default", "iris-logger"), timeout=60) as client:
            status = await drift_after(c, client, rng, "iris", "iris")
            assert status["drift"]["detected"] is True and status["drift"]["featuresDrifted"] == ["c"]
            row = await kubectl_row(c)
            assert (row["PHASE"], row["DRIFT"]) == ("Ready", "true"), c.status("iris")["message"] + pod_logs(runner)
            # the other detectors saw the same traffic, through the logger's CloudEvents
            await eventually(lambda: (c.status("iris").get("outliers") or {}).get("rate") is not None,
                             timeout=60, what="outlier rate in the status")
            r = await client.post(runner.url("default", "iris-explainer") + "/explain",
                                  json={"instances": [[0.5, -0.2, 0.1]]}, timeout=120)
            assert r.status_code == 200 and "anchor" in r.text, r.text
        assert not runner.crashes and not runner.violations, (runner.crashes, runner.violations)
        assert not c.forbidden()
        isolated(runner, {"model", "logger", "outlier", "drift", "quality", "metrics", "explainer",
                          "fetch", "train", "upload"})


def isolated(runner: PodRunner, containers: set[str]) -> None:
    """Every container of the operator's pods ran as uid 65532 on a read-only root."""
    ours = [r for r in runner.ran if not r["pod"].startswith("fraud-model-")]
    assert {r["container"] for r in ours} == containers
    assert {(r["uid"], r["gid"], r["readOnlyRoot"]) for r in ours} == {(65532, 65532, True)}, ours


EXTERNAL_MODEL = {"VIGIL_MODEL_FEATURE_NAMES": '["a","b","c"]', "VIGIL_MODEL_FORMAT": "sklearn",
                  "VIGIL_MODEL_NAME": "fraud", "VIGIL_MODEL_CATEGORICAL": "{}",
                  "VIGIL_MODEL_URI": "/mnt/models/fraud/model.joblib"}


async def external_model(c) -> None:
    """Someone else's model server: a Deployment and Service in namespace ``prod``, reading the
    model from that namespace's ``models`` claim (run by the pod runner like any Deployment)."""
    labels = {"app": "fraud-model"}
    base = "/api/v1/namespaces/prod"
    await c._call("POST", f"{base}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "fraud-model", "namespace": "prod"},
                                                  "data": EXTERNAL_MODEL})
    await c._call("POST", f"{base}/services", {"apiVersion": "v1", "kind": "Service",
                                                "metadata": {"name": "fraud-model", "namespace": "prod"},
                                                "spec": {"selector": labels, "ports": [{"port": 8080}]}})
    container = {"name": "model", "image": "team/model:1", "command": ["vigil", "serve", "model", "--port", "8080"],
                 "envFrom": [{"configMapRef": {"name": "fraud-model"}}], "env": [{"name": "HOME", "value": "/tmp"}],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
                 "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}},
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                  {"name": "models", "mountPath": "/mnt/models", "readOnly": True}]}
    await c._call("POST", "/apis/apps/v1/namespaces/prod/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fraud-model", "namespace": "prod"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "models", "persistentVolumeClaim": {"claimName": "models"}}]}}}})


async def test_endpoint_monitor_with_an_explainer_runs_as_pods(tmp_path, monkeypatch):
    components = ["logger", "drift", "explainer"]
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
           "metadata": {"name": "fraud", "namespace": "default"},
           "spec": {"model": {"endpoint": "http://fraud-model.prod.svc:8080", "name": "fraud"},
                    "schema": {"featureNames": FEATURES},
                    "reference": {"storageUri": "pvc://models/fraud/reference.csv"},
                    "logger": {"mode": "all"},
                    "detectors": {"drift": {"pValue": 0.05, "window": {"size": WINDOW, "maxAge": "1h"}},
                                  "explainer": {"type": "anchor-tabular", "threshold": 0.9}}}}
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(doc))
    async with cluster(tmp_path) as c, PodRunner(c.emu, tmp_path / "run") as runner, \
            running_operator(c, monkeypatch, status_urls=status_urls(runner, "fraud", components), **POLL):
        for ns in ("default", "prod"):
            await models_claim(c, ns)
        rng = user_files(runner, "default", "fraud")
        (runner.claim_dir("prod", "models") / "fraud").mkdir(parents=True)
        (runner.claim_dir("prod", "models") / "fraud" / "model.joblib").write_bytes(
            (runner.claim_dir("default", "models") / "fraud" / "model.joblib").read_bytes())
        await external_model(c)  # already serving when the monitor is applied
        await eventually(lambda: (c.emu.get("apps/v1/deployments", "prod", "fraud-model").get("status") or {})
                         .get("availableReplicas") == 1 or runner.crashes, timeout=120, what="the endpoint up")
        assert not runner.crashes, runner.crashes
        out = await kubectl(c, "apply", "-f", str(tmp_path / "monitor.yaml"))
        assert out.strip() == "modelmonitor.vigil.dev/fraud created"

        status = await ready(c, runner, "fraud", TRAINING)
        assert status["components"] == dict.fromkeys(components, "Ready")
        assert status["training"] == {"explainer": "Succeeded"}
        job = next(iter(c.objects("Job")))
        assert runner.finished[job] == 0

        async with httpx.AsyncClient(base_url=runner.url("default", "fraud-logger"), timeout=60) as client:
            status = await drift_after(c, client, rng, "fraud", "fraud")
        assert status["drift"]["detected"] is True and status["drift"]["featuresDrifted"] == ["c"]
        row = await kubectl_row(c)
        assert (row["NAME"], row["PHASE"], row["DRIFT"]) == ("fraud", "Ready", "true"), \
            c.status("fraud")["message"] + pod_logs(runner)
        # the explainer explains through the endpoint (its Service name, from its own pod)
        async with httpx.AsyncClient(timeout=120) as http:
            r = await http.post(runner.url("default", "fraud-explainer") + "/explain",
                                json={"instances": [[0.5, -0.2, 0.1]]})
        assert r.status_code == 200 and "anchor" in r.text, r.text
        assert not runner.crashes and not runner.violations, (runner.crashes, runner.violations)
        assert not c.forbidden()
        isolated(runner, {"logger", "drift", "explainer", "fetch", "train", "upload"})
