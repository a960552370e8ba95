"""The operator end to end: real kopf against the Kubernetes API emulator (tests/kubeemu.py).

The operator runs as its own identity, allowed exactly the rules of
``operator/vigil_operator/rbac.yaml`` (the emulator answers 403 to anything else), so
every test here also proves those rules suffice. The emulator has no controllers: where
a cluster's deployment or job controller would act, the test does it explicitly
(`Cluster.rollout`, `Cluster.finish_job`). No component answers /status here (see
test_operator_status.py for real detector processes), so components read Unreachable.
"""

from __future__ import annotations

import asyncio
import copy
import json

import httpx
import pytest

from tests.operator_harness import Cluster, cluster, deep, eventually, load_example, running_operator, snapshot
from tests.servers import free_port
from vigil_operator import manifests
from vigil_operator.placement import resolve

pytestmark = pytest.mark.asyncio

COMPONENTS = ["logger", "model", "outlier", "drift", "metrics", "explainer"]


def iris() -> dict:
    return copy.deepcopy(load_example("iris-monitor.yaml"))


async def started(c: Cluster, name: str = "iris") -> dict:
    """Wait until the first reconcile has created every child that does not wait for training."""
    await eventually(lambda: len(c.objects("Deployment")) >= 4 and c.status(name).get("phase"),
                     what="children created and a phase written")
    return c.children(name)


async def test_apply_creates_children_owned_by_the_monitor(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        created = await c.create_monitor(iris())
        children = await started(c)
        uid = created["metadata"]["uid"]

        names = {(k, n) for k, n in children}
        for comp in COMPONENTS:
            assert ("ConfigMap", f"iris-{comp}") in names
            assert ("Service", f"iris-{comp}") in names
        # outlier and explainer have no storageUri: trained first, their Deployments wait for the Jobs
        assert {n for k, n in names if k == "Deployment"} == {"iris-logger", "iris-model", "iris-drift", "iris-metrics"}
        jobs = sorted(n for k, n in names if k == "Job")
        assert len(jobs) == 2 and jobs[0].startswith("iris-explainer-train-") and jobs[1].startswith("iris-outlier-train-")
        assert ("ServiceAccount", "iris-vigil") in names
        assert ("PersistentVolumeClaim", "iris-artifacts") in names
        assert ("PersistentVolumeClaim", "iris-drift-state") in names

        # every child is owned by the monitor (the cluster's garbage collector relies on it)
        for (kind, name), obj in children.items():
            refs = obj["metadata"]["ownerReferences"]
            assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in refs] == \
                [("ModelMonitor", "iris", uid, True)], (kind, name)

        # the ConfigMap holds exactly the plan's env; the Deployment runs the plan's command
        cm = children[("ConfigMap", "iris-drift")]
        assert cm["data"]["VIGIL_DRIFT_P_VALUE"] == "0.05"
        assert cm["data"]["VIGIL_DRIFT_REFERENCE"] == resolve("pvc://models/iris/reference.csv").path
        dep = children[("Deployment", "iris-drift")]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["vigil", "serve", "drift", "--port", "8080"]
        assert container["image"] == "ghcr.io/vigil-monitor/vigil-detectors:0.1.0"
        job = children[("Job", jobs[1])]
        assert job["spec"]["template"]["spec"]["initContainers"][1]["command"][:4] == \
            ["vigil", "train", "--component", "outlier"]
        assert _arg(children[("Job", jobs[0])], "--model") == resolve("pvc://models/iris/model.joblib").path

        status = c.status("iris")
        assert status["phase"] == "Training"
        assert status["components"]["outlier"] == status["components"]["explainer"] == "Training"
        assert status["training"] == {"outlier": "Running", "explainer": "Running"}
        assert status["observedGeneration"] == 1
        assert status["model"] == "iris"
        assert status["endpoints"]["inference"] == "http://iris-logger.default.svc:8080/v2/models/iris/infer"
        assert not c.forbidden(), c.forbidden()


async def test_training_job_then_detector_deployment(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        await c.create_monitor(iris())
        children = await started(c)
        job = next(n for k, n in children if k == "Job" and "-outlier-" in n)
        explainer_job = next(n for k, n in children if k == "Job" and "-explainer-" in n)
        assert "iris-outlier" not in c.objects("Deployment")

        await c.finish_job(job)  # the job controller: training succeeded
        dep = await eventually(lambda: c.objects("Deployment").get("iris-outlier"), what="outlier Deployment")
        assert c.status("iris")["phase"] == "Training"  # the explainer is still training
        await c.finish_job(explainer_job)
        await eventually(lambda: c.objects("Deployment").get("iris-explainer"), what="explainer Deployment")
        fetch = dep["spec"]["template"]["spec"]["initContainers"][0]
        artifact = resolve("pvc://iris-artifacts/outlier")
        assert fetch["command"] == [*manifests.FETCH_COMMAND, artifact.source, artifact.path]  # reads what the Job wrote
        cm = c.objects("ConfigMap")["iris-outlier"]
        assert cm["data"]["VIGIL_OUTLIER_ARTIFACT"] == artifact.path
        await eventually(lambda: c.status("iris").get("phase") == "Progressing", what="phase Progressing")
        assert c.status("iris")["training"] == {"outlier": "Succeeded", "explainer": "Succeeded"}
        trained = next(x for x in c.status("iris")["conditions"] if x["type"] == "Trained")
        assert trained["status"] == "True"

        # all Deployments rolled out, but nothing answers /status: components Unreachable, not Ready
        for name in c.objects("Deployment"):
            await c.rollout(name)
        await eventually(lambda: c.status("iris")["components"]["logger"] == "Unreachable", what="rolled out")
        assert c.status("iris")["phase"] == "Progressing"

        # a changed training option makes a new Job (Jobs are immutable) and deletes the old one
        await c.patch_monitor("iris", {"spec": {"detectors": {"outlier": {"epochs": 5}}}})
        new_jobs = await eventually(lambda: [n for n in c.objects("Job") if n not in (job, explainer_job)],
                                    what="a new training Job")
        await eventually(lambda: job not in c.objects("Job"), what="old Job deleted")
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="phase Training again")
        assert json.loads(_arg(c.objects("Job")[new_jobs[0]], "--options"))["epochs"] == 5
        # the running detector keeps serving the old artifact until the new one is trained;
        # the explainer's Job did not change
        assert "iris-outlier" in c.objects("Deployment") and explainer_job in c.objects("Job")

        # a failed training run fails the monitor, naming the Job
        await c.finish_job(new_jobs[0], failed=True)
        await eventually(lambda: c.status("iris").get("phase") == "Failed", what="phase Failed")
        assert new_jobs[0] in c.status("iris")["message"] and "backoff limit" in c.status("iris")["message"]
        assert not c.forbidden(), c.forbidden()


def _arg(job: dict, flag: str) -> str:
    train = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "train")
    cmd = train["command"]
    return cmd[cmd.index(flag) + 1]


async def test_changing_one_detector_rolls_only_that_component(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        await c.create_monitor(iris())
        await started(c)
        await asyncio.sleep(1.0)  # a few timer ticks: nothing changes on its own
        before = c.children("iris")
        await asyncio.sleep(1.0)
        assert snapshot(c.children("iris")) == snapshot(before), "idle reconciles must not write"

        await c.patch_monitor("iris", {"spec": {"detectors": {"drift": {"pValue": 0.01}}}})
        await eventually(lambda: c.objects("ConfigMap")["iris-drift"]["data"]["VIGIL_DRIFT_P_VALUE"] == "0.01",
                         what="drift ConfigMap patched")
        await eventually(lambda: c.status("iris").get("observedGeneration") == 2, what="generation 2 observed")
        await asyncio.sleep(1.0)  # and a few more ticks
        after = c.children("iris")

        changed = {k for k in before if before[k]["metadata"]["resourceVersion"] != after[k]["metadata"]["resourceVersion"]}
        assert changed == {("ConfigMap", "iris-drift"), ("Deployment", "iris-drift")}
        old, new = before[("Deployment", "iris-drift")], after[("Deployment", "iris-drift")]
        digest = manifests.A_DIGEST
        assert old["spec"]["template"]["metadata"]["annotations"][digest] != \
            new["spec"]["template"]["metadata"]["annotations"][digest]  # the pods roll
        for comp in COMPONENTS:
            if comp not in ("drift", "outlier", "explainer"):  # (the last two wait for training)
                key = ("Deployment", f"iris-{comp}")
                assert deep(before[key], "spec", "template", "metadata", "annotations", digest) == \
                    deep(after[key], "spec", "template", "metadata", "annotations", digest)
        assert not c.forbidden(), c.forbidden()


async def test_removing_a_detector_deletes_its_objects(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        await c.create_monitor(iris())
        await started(c)
        assert "explainer" in c.status("iris")["components"]
        await c.patch_monitor("iris", {"spec": {"detectors": {"explainer": None, "metrics": None}}})
        await eventually(lambda: not any(n.endswith(("-explainer", "-metrics")) for k, n in c.children("iris")),
                         what="explainer and metrics objects deleted")
        names = {n for k, n in c.children("iris")}
        assert {"iris-logger", "iris-model", "iris-drift"} <= names
        # the logger no longer sends to the metrics service
        sinks = json.loads(c.objects("ConfigMap")["iris-logger"]["data"]["VIGIL_LOGGER_SINKS"])
        assert [s["name"] for s in sinks] == ["outlier", "drift"]
        status = await eventually(lambda: (s := c.status("iris")) and "explainer" not in s["components"] and s,
                                  what="status without the removed components")
        assert "metrics" not in status["components"] and "explain" not in status["endpoints"]
        assert not c.forbidden(), c.forbidden()


async def test_bad_spec_fails_with_the_field_and_recovers(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch) as runtime:
        doc = iris()
        # passes the CRD schema (categorical is free-form there) but not the operator's model
        doc["spec"]["schema"]["categorical"] = {"colour": 3}
        await c.create_monitor(doc)
        status = await eventually(lambda: c.status("iris").get("phase") == "Failed" and c.status("iris"),
                                  what="phase Failed")
        assert status["message"].startswith("spec.schema")
        assert "colour" in status["message"]
        ready = status["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
        assert c.children("iris") == {}
        warnings = await eventually(lambda: c.events(reason="PhaseChanged"), what="a PhaseChanged event")
        assert any(e["type"] == "Warning" and "Failed" in e["message"] for e in warnings)
        # kopf does not retry a permanent error: the operator keeps running and serving
        await asyncio.sleep(1.0)
        assert c.status("iris")["phase"] == "Failed"

        await c.patch_monitor("iris", {"spec": {"schema": {"categorical": None}}})
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="recovered to Training")
        assert len(c.objects("Deployment")) == 4
        assert c.status("iris")["observedGeneration"] == 2
        assert runtime.metrics.reconciles.labels("invalid")._value.get() >= 1
        assert runtime.metrics.reconciles.labels("success")._value.get() >= 1
        assert not c.forbidden(), c.forbidden()


async def test_object_refused_by_the_cluster_fails_the_monitor_until_fixed(tmp_path, monkeypatch):
    """A policy (admission webhook) refuses an image registry: the monitor says which object
    and why, and recovers when the spec no longer asks for it."""
    def registry_policy(kind, obj):
        if kind == "Deployment":
            for ctr in obj["spec"]["template"]["spec"]["containers"]:
                if not ctr["image"].startswith("ghcr.io/vigil-monitor/"):
                    return f"image {ctr['image']} is not from an allowed registry"
        return None

    async with cluster(tmp_path, admission=[registry_policy]) as c, running_operator(c, monkeypatch):
        doc = iris()
        doc["spec"]["model"]["image"] = "docker.io/someone/v2-server:1"
        await c.create_monitor(doc)
        status = await eventually(lambda: c.status("iris").get("phase") == "Failed" and c.status("iris"),
                                  what="phase Failed")
        assert status["conditions"][0]["reason"] == "Rejected"
        assert "Deployment iris-model was rejected" in status["message"]
        assert "docker.io/someone/v2-server:1 is not from an allowed registry" in status["message"]
        await c.patch_monitor("iris", {"spec": {"model": {"image": None}}})
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="recovered")
        assert "iris-model" in c.objects("Deployment")
        assert not c.forbidden(), c.forbidden()  # the denial is admission, not RBAC


async def test_rbac_is_enforced_on_the_operator(tmp_path, monkeypatch):
    """The RBAC check behind every `not c.forbidden()` is real: without the Deployment rule the
    operator is refused, and says so in the monitor's status."""
    from tests.operator_harness import OPERATOR_TOKEN, RBAC_RULES

    rules = [r for r in RBAC_RULES if r["resources"] != ["deployments"]]
    async with cluster(tmp_path, rbac={OPERATOR_TOKEN: rules}) as c, running_operator(c, monkeypatch):
        await c.create_monitor(iris())
        status = await eventually(lambda: c.status("iris").get("phase") == "Failed" and c.status("iris"),
                                  what="phase Failed")
        assert 'cannot list resource "deployments"' in status["message"] or \
            'cannot create resource "deployments"' in status["message"]
        assert c.forbidden()


async def test_deleting_the_monitor_garbage_collects_children(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch) as runtime:
        await c.create_monitor(iris())
        await started(c)
        assert c.monitor("iris")["metadata"]["finalizers"] == ["vigil.dev/kopf-finalizer"]  # kopf's, for its timer
        await c.delete_monitor("iris")
        await eventually(lambda: c.monitor("iris") is None, what="monitor gone (finalizer released)")
        await eventually(lambda: c.children("iris") == {}, what="children collected")
        await eventually(lambda: runtime.metrics.monitors.labels("Training")._value.get() == 0, what="gauge")
        assert not c.forbidden(), c.forbidden()


async def test_restarted_operator_catches_up_and_repairs(tmp_path, monkeypatch):
    """Edits made while the operator is down are applied when it comes back (kopf's resume or
    update), and a child deleted by hand is recreated by the next converge."""
    async with cluster(tmp_path) as c:
        async with running_operator(c, monkeypatch):
            await c.create_monitor(iris())
            await started(c)
        await c.patch_monitor("iris", {"spec": {"detectors": {"drift": {"pValue": 0.02}}}})
        uid_before = c.objects("ConfigMap")["iris-logger"]["metadata"]["uid"]
        await c._call("DELETE", "/api/v1/namespaces/default/configmaps/iris-metrics")
        async with running_operator(c, monkeypatch):
            await eventually(lambda: c.objects("ConfigMap")["iris-drift"]["data"]["VIGIL_DRIFT_P_VALUE"] == "0.02",
                             what="the edit made while down")
            await eventually(lambda: "iris-metrics" in c.objects("ConfigMap"), what="the deleted ConfigMap back")
            await eventually(lambda: c.status("iris").get("observedGeneration") == 2, what="generation 2 observed")
        assert c.objects("ConfigMap")["iris-logger"]["metadata"]["uid"] == uid_before  # patched, never recreated
        assert len(c.objects("Deployment")) == 4 and len(c.objects("Job")) == 2
        assert not c.forbidden(), c.forbidden()


async def test_endpoint_monitor_has_no_model_server(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        doc = load_example("endpoint-monitor.yaml")
        doc["spec"]["prometheus"] = {"serviceMonitor": True, "rules": True}
        await c.create_monitor(doc)
        await eventually(lambda: c.status("fraud").get("phase"), what="a phase")
        names = {n for k, n in c.children("fraud") if k == "Deployment"}
        assert names == {"fraud-logger", "fraud-drift"}
        env = c.objects("ConfigMap")["fraud-logger"]["data"]
        assert env["VIGIL_LOGGER_UPSTREAM"] == "http://fraud-model.prod.svc:8080"
        assert c.status("fraud")["endpoints"]["inference"] == \
            "http://fraud-logger.default.svc:8080/v2/models/fraud/infer"
        # no Prometheus Operator in this cluster, and no per-monitor rules: said, not failed
        warning = await eventually(lambda: next((x for x in c.status("fraud")["conditions"] if x["type"] == "Warning"),
                                                None), what="a Warning condition")
        assert "ServiceMonitor CRD" in warning["message"] and "spec.prometheus.rules" in warning["message"]
        assert c.status("fraud")["phase"] != "Failed"
        assert not c.forbidden(), c.forbidden()


async def test_operator_process_serves_liveness_and_metrics(tmp_path, monkeypatch):
    """`operate` as `vigil operator` runs it: kopf's liveness endpoint and our Prometheus endpoint."""
    live, prom = free_port(), free_port()
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch, liveness_port=live, metrics_port=prom):
        await c.create_monitor(iris())
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="phase")
        async with httpx.AsyncClient() as http:
            health = await eventually(lambda: _get(http, f"http://127.0.0.1:{live}/healthz"), what="liveness")
            assert health.status_code == 200
            text = await eventually(lambda: _metrics(http, f"http://127.0.0.1:{prom}/metrics"), what="metrics")
        assert 'vigil_operator_monitors{phase="Training"} 1.0' in text
        assert 'vigil_operator_monitors{phase="Ready"} 0.0' in text
        assert "vigil_operator_errors_total 0.0" in text
        success = [line for line in text.splitlines() if line.startswith('vigil_operator_reconciles_total{result="success"}')]
        assert success and float(success[0].split()[-1]) >= 1


async def _metrics(http: httpx.AsyncClient, url: str):
    r = await _get(http, url)
    return r.text if r is not None and 'phase="Training"} 1.0' in r.text else None


async def _get(http: httpx.AsyncClient, url: str):
    try:
        r = await http.get(url)
        return r if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def test_host_paths_and_metadata_addresses_are_refused_naming_the_field(tmp_path, monkeypatch):
    """Safe by default (DESIGN §12): file:// fails the monitor unless the operator allows host
    paths; an endpoint or https:// storage at a link-local, loopback or API-server address
    fails it too; fixing the field recovers."""
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        doc = iris()
        doc["spec"]["model"]["storageUri"] = "file:///etc/vigil/model.joblib"
        await c.create_monitor(doc)
        status = await eventually(lambda: c.status("iris").get("phase") == "Failed" and c.status("iris"),
                                  what="phase Failed")
        assert status["message"].startswith("spec.model.storageUri:") and "--allow-host-path" in status["message"]
        assert c.children("iris") == {}

        await c.patch_monitor("iris", {"spec": {"model": {"storageUri": None,
                                                          "endpoint": "http://169.254.169.254/latest"}}})
        status = await eventually(lambda: "endpoint" in c.status("iris").get("message", "") and c.status("iris"),
                                  what="endpoint refused")
        assert status["phase"] == "Failed" and "link-local" in status["message"]

        await c.patch_monitor("iris", {"spec": {"model": {"endpoint": None,
                                                          "storageUri": "https://localhost/model.joblib"}}})
        status = await eventually(lambda: "resolves to" in c.status("iris").get("message", "") and c.status("iris"),
                                  what="https storage refused")
        assert status["message"].startswith("spec.model.storageUri:") and "loopback" in status["message"]

        await c.patch_monitor("iris", {"spec": {"model": {"storageUri": "pvc://models/iris/model.joblib"}}})
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="recovered")
        assert not c.forbidden(), c.forbidden()

    async with cluster(tmp_path) as c, running_operator(c, monkeypatch, allow_host_path=True):
        doc = iris()
        doc["spec"]["model"]["storageUri"] = "file:///vigil-data/iris/model.joblib"
        await c.create_monitor(doc)
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="allowed with --allow-host-path")
        spec = c.objects("Deployment")["iris-model"]["spec"]["template"]["spec"]
        assert [v["hostPath"] for v in spec["volumes"] if "hostPath" in v] == [{"path": "/vigil-data/iris/model.joblib"}]


async def test_a_deployment_from_an_older_selector_is_replaced(tmp_path, monkeypatch):
    """Deployment selectors are immutable: one made by an operator without `vigil.dev/role`
    in its selector is replaced, not patched (which the API server would refuse)."""
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        await c.create_monitor(iris())
        await started(c)
        old = c.objects("Deployment")["iris-logger"]
        selector = dict(old["spec"]["selector"]["matchLabels"])
        selector.pop(manifests.L_ROLE)
        key = next(k for k in c.emu.objects if k[2] == "iris-logger" and "deployments" in str(k[0]))
        c.emu.objects[key].raw["spec"]["selector"]["matchLabels"] = selector
        c.emu.objects[key].raw["metadata"]["annotations"][manifests.A_APPLIED] = "old"
        new = await eventually(lambda: c.objects("Deployment").get("iris-logger", {}).get("metadata", {}).get("uid")
                               not in (None, old["metadata"]["uid"]) and c.objects("Deployment")["iris-logger"],
                               what="the Deployment replaced")
        assert new["spec"]["selector"]["matchLabels"][manifests.L_ROLE] == "serve"


async def test_two_peered_replicas_one_acts(tmp_path, monkeypatch):
    """The chart's two operator replicas share a KopfPeering (kopf's peering): both keep
    themselves alive in it, only the higher-priority one handles monitors."""
    async with cluster(tmp_path) as c:
        await c._call("POST", "/apis/kopf.dev/v1/namespaces/default/kopfpeerings",
                      {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                       "metadata": {"name": "vigil-operator", "namespace": "default"}})
        async with running_operator(c, monkeypatch, peering="vigil-operator") as first, \
                running_operator(c, monkeypatch, peering="vigil-operator") as second:
            peers = await eventually(
                lambda: len((c.emu.get("kopf.dev/v1/kopfpeerings", "default", "vigil-operator") or {})
                            .get("status") or {}) == 2 and c.emu.get("kopf.dev/v1/kopfpeerings", "default",
                                                                     "vigil-operator")["status"],
                what="both replicas in the peering object")
            assert len({p["priority"] for p in peers.values()}) == 2  # distinct: one of them acts
            await c.create_monitor(iris())
            await started(c)
            await asyncio.sleep(1.5)  # several status intervals
            acted = [r for r in (first, second) if r.metrics.reconciles.labels("success")._value.get() > 0]
            assert len(acted) == 1, [r.metrics.reconciles.labels("success")._value.get() for r in (first, second)]
            assert not c.forbidden(), c.forbidden()


async def test_autoscaling_pdb_and_network_policy_under_the_operators_rbac(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch, network_policy=True,
                                                        operator_namespace="vigil-system"):
        doc = iris()
        doc["spec"]["logger"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 4}
        doc["spec"]["pod"] = {"imagePullSecrets": [{"name": "team-registry"}]}
        await c.create_monitor(doc)
        await started(c)
        hpa = await eventually(lambda: c.objects("HorizontalPodAutoscaler").get("iris-logger"), what="an HPA")
        assert hpa["spec"]["maxReplicas"] == 4
        assert set(c.objects("PodDisruptionBudget")) == {"iris-logger"}
        assert set(c.objects("NetworkPolicy")) == {"iris-detectors"}
        assert c.objects("Deployment")["iris-logger"]["spec"]["template"]["spec"]["imagePullSecrets"] == \
            [{"name": "team-registry"}]
        # removing autoscaling removes the HPA and the PDB
        await c.patch_monitor("iris", {"spec": {"logger": {"autoscaling": None}}})
        await eventually(lambda: not c.objects("HorizontalPodAutoscaler") and not c.objects("PodDisruptionBudget"),
                         what="HPA and PDB deleted")
        assert not c.forbidden(), c.forbidden()


# -- an image monitor (DESIGN §8, issue 11) --------------------------------------------------------

SHAPE = [32, 32, 3]


def cifar(tmp_path) -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "cifar"},
            "spec": {"model": {"storageUri": f"file://{tmp_path}/model.joblib", "format": "sklearn", "name": "cifar"},
                     "schema": {"shape": SHAPE},
                     "reference": {"storageUri": f"file://{tmp_path}/reference.npy"},
                     "detectors": {"outlier": {"type": "vae", "latentDim": 16, "epochs": 5},
                                   "drift": {"pValue": 0.01, "preprocess": {"type": "uae", "encodingDim": 32},
                                             "window": {"size": 500}},
                                   "metrics": {"task": "classification", "classes": ["china", "flower"]},
                                   "explainer": {"type": "anchor-image", "threshold": 0.9, "timeout": "60s"}}}}


def _local_env(configmap: dict, tmp_path, urls: dict) -> dict:
    """A component's env from the operator's ConfigMap, its pod's copies of files and its peers made local."""
    env = dict(configmap["data"])
    copies = {resolve(f"file://{tmp_path}/{f}").path: str(tmp_path / f) for f in ("model.joblib", "reference.npy")}
    env = {k: copies.get(v, v) for k, v in env.items()}
    if "VIGIL_LOGGER_UPSTREAM" in env:
        env["VIGIL_LOGGER_UPSTREAM"] = urls["model"]
        env["VIGIL_LOGGER_SINKS"] = json.dumps([{**s, "url": urls.get(s["name"], "http://127.0.0.1:9")}
                                                for s in json.loads(env["VIGIL_LOGGER_SINKS"])])
    return env


@pytest.mark.slow
async def test_image_monitor_is_admitted_rendered_with_its_shape_and_its_status_follows(tmp_path, monkeypatch):
    """`schema.shape` [32, 32, 3] with the image detector set: the CRD admits it (and its CEL refuses an
    image explainer on a shape that is not an image), the shape reaches every component that reads
    instances (ConfigMap env, training Job command lines), and the status goes Training -> Progressing
    -> components Ready as real model, logger and metrics processes started from those ConfigMaps
    answer — a wrong image shape through the logger is the model server's 400 naming both shapes."""
    import concurrent.futures

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from tests import imagedata
    from tests.servers import serve_component
    from vigil.events import v2_request

    x, y = imagedata.patches(300, seed=3)
    np.save(tmp_path / "reference.npy", x[:200])
    joblib.dump(LogisticRegression(max_iter=300).fit(x[:200].reshape(200, -1), y[:200]), tmp_path / "model.joblib")
    ports = {name: free_port() for name in ("model", "logger", "metrics")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch, allow_host_path=True,
                                                        status_urls={f"default/cifar/{n}": u for n, u in urls.items()}):
        # admission: the CRD's CEL refuses an anchor-image explainer on a 4-d shape, naming the field
        bad = cifar(tmp_path)
        bad["spec"]["schema"]["shape"] = [2, *SHAPE]
        with pytest.raises(AssertionError, match=r"422.*spec\.detectors\.explainer.*anchor-image"):
            await c.create_monitor(bad)
        bad["spec"]["schema"]["shape"] = [32, 0, 3]
        with pytest.raises(AssertionError, match=r"422.*spec\.schema\.shape"):
            await c.create_monitor(bad)
        assert c.monitor("cifar") is None
        created = await c.create_monitor(cifar(tmp_path))
        assert created["spec"]["schema"]["shape"] == SHAPE

        # rendering: all three trainable detectors train first, each told the shape
        await eventually(lambda: len(c.objects("Job")) == 3 and c.status("cifar").get("phase"), what="training Jobs")
        status = c.status("cifar")
        assert status["phase"] == "Training"
        assert {k: status["components"][k] for k in ("outlier", "drift", "explainer")} == \
            {"outlier": "Training", "drift": "Training", "explainer": "Training"}
        jobs = {n.split("-")[1]: n for n in c.objects("Job")}
        assert set(jobs) == {"outlier", "drift", "explainer"}
        for comp, job in jobs.items():
            assert json.loads(_arg(c.objects("Job")[job], "--shape")) == SHAPE, comp
        assert json.loads(_arg(c.objects("Job")[jobs["drift"]], "--options"))["preprocess"] == \
            {"type": "uae", "encodingDim": 32, "seed": 0}
        assert json.loads(_arg(c.objects("Job")[jobs["explainer"]], "--options"))["type"] == "anchor-image"
        for job in jobs.values():
            await c.finish_job(job)
        await eventually(lambda: len(c.objects("Deployment")) == 6, what="every Deployment once trained")
        configmaps = c.objects("ConfigMap")
        for comp in ("model", "outlier", "drift", "explainer"):
            env = configmaps[f"cifar-{comp}"]["data"]
            assert json.loads(env[f"VIGIL_{comp.upper()}_SHAPE"]) == SHAPE, comp
        assert configmaps["cifar-drift"]["data"]["VIGIL_DRIFT_PREPROCESS"] == "uae"
        assert configmaps["cifar-explainer"]["data"]["VIGIL_EXPLAINER_TYPE"] == "anchor-image"

        # status: trained, rolled out, then the processes' own /status
        for name in c.objects("Deployment"):
            await c.rollout(name)
        await eventually(lambda: c.status("cifar").get("components", {}).get("model") == "Unreachable",
                         what="rolled out, no process yet")
        assert c.status("cifar")["phase"] == "Progressing"
        assert c.status("cifar")["training"] == {"outlier": "Succeeded", "drift": "Succeeded", "explainer": "Succeeded"}
        managers = {name: serve_component(name, env=_local_env(configmaps[f"cifar-{name}"], tmp_path, urls),
                                          port=ports[name], timeout=120) for name in ("model", "metrics", "logger")}
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            started = await asyncio.gather(*(loop.run_in_executor(pool, m.__enter__) for m in managers.values()))
        try:
            assert started == [urls[n] for n in managers]
            status = await eventually(lambda: all(c.status("cifar").get("components", {}).get(n) == "Ready"
                                                  for n in managers) and c.status("cifar"),
                                      timeout=30, what="model, logger and metrics Ready")
            # the detectors without a process here stay Unreachable: the monitor is not Ready
            assert {status["components"][n] for n in ("outlier", "drift", "explainer")} == {"Unreachable"}
            assert status["phase"] != "Ready"
            async with httpx.AsyncClient(base_url=urls["logger"], timeout=30) as http:
                ok = await http.post("/v2/models/cifar/infer", json=v2_request(x[200:210]))
                assert ok.status_code == 200, ok.text
                assert ok.json()["outputs"][0]["shape"][0] == 10
                wrong = await http.post("/v2/models/cifar/infer", json=v2_request(x[200:202, :16, :16]))
                assert wrong.status_code == 400, wrong.text
                assert "32, 32, 3" in wrong.text and "16, 16, 3" in wrong.text
        finally:
            for m in reversed(list(managers.values())):
                m.__exit__(None, None, None)
        assert not c.forbidden(), c.forbidden()
