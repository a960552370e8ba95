"""The operator's pure parts: placement, rendered manifests, merge patches, status, RBAC rules.

Every rendered object passes `kubernetes-validate --strict` (Kubernetes 1.32 schemas);
the rest checks what the schemas cannot: the pod security settings, probes, labels and
selectors, owner references, the volumes for each storage scheme, and that the objects
carry exactly the plan's env and command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import kopf
import kubernetes_validate
import pytest
import yaml

from vigil.plan import build_plan
from vigil.spec import SpecError, monitor_from_dict
from vigil_operator import manifests
from vigil_operator.config import OperatorConfig, measured_resources
from vigil_operator.kube import ROUTES
from vigil_operator.placement import KubePlacement, resolve
from vigil_operator.reconcile import CREATE_ONLY, NEVER_PRUNE, Converged, job_state, load, merge_patch
from vigil_operator.status import as_patch, compose, rollout

ROOT = Path(__file__).resolve().parent.parent
CONFIG = OperatorConfig()


def example(name: str = "iris-monitor.yaml") -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def render(doc: dict, config: OperatorConfig = CONFIG, artifacts_uri=None):
    monitor = monitor_from_dict(doc)
    placement = KubePlacement(monitor.name, monitor.namespace, artifacts_uri=artifacts_uri)
    plan = build_plan(monitor, placement)
    return plan, placement, manifests.render(plan, placement, config)


def containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def with_storage(**uris) -> dict:
    doc = example()
    doc["spec"]["model"]["storageUri"] = uris.get("model", "pvc://models/iris/model.joblib")
    doc["spec"]["reference"]["storageUri"] = uris.get("reference", "pvc://models/iris/reference.csv")
    return doc


# ----------------------------------------------------------------------------- placement

def test_placement_addresses_and_paths():
    p = KubePlacement("iris", "ml")
    assert p.port("drift") == 8080
    assert p.url("drift") == "http://iris-drift.ml.svc:8080"
    # every URI is read from the pod's own data volume, in a directory of its own
    model = p.path("pvc://models/iris/model.joblib")
    assert model.startswith("/mnt/vigil/data/") and model.endswith("/model.joblib")
    assert resolve("pvc://models/iris/model.joblib").source == "/mnt/vigil/sources/pvc/models/iris/model.joblib"
    host = resolve("file:///data/iris/model.joblib")
    assert host.host_path == "/data/iris/model.joblib" and host.path.endswith("/model.joblib")
    assert resolve("/data/x.csv").scheme == "file"  # a bare absolute path is a host path
    s3 = resolve("s3://bucket/iris/reference.csv")
    assert s3.path.startswith("/mnt/vigil/data/") and s3.path.endswith("/reference.csv") and s3.source == s3.uri
    assert resolve("s3://bucket/other/reference.csv").path != s3.path  # same basename, own directory
    archive = resolve("gs://b/models/iris.tar.gz")
    assert archive.archive and archive.path.endswith("/iris")  # unpacked into a directory
    assert resolve("https://h/m.zip").path.endswith("/m")
    assert p.artifact_uri("outlier") == "pvc://iris-artifacts/outlier"
    assert KubePlacement("iris", "ml", artifacts_uri="s3://b/vigil/").artifact_uri("outlier") == "s3://b/vigil/outlier"
    assert not p.stateful
    assert p.state_dir("drift") == "/mnt/vigil/state"
    assert p.stateful == {"drift"} and p.state_claim("drift") == "iris-drift-state"
    with pytest.raises(ValueError, match="relative"):
        p.path("models/model.joblib")
    with pytest.raises(ValueError):
        p.path("pvc:///no-claim")
    with pytest.raises(ValueError, match="leaves"):
        p.path("pvc://models/../../etc/passwd")


def test_relative_storage_uri_is_a_spec_error_naming_the_field():
    doc = example()
    doc["spec"]["reference"]["storageUri"] = "data/reference.csv"
    with pytest.raises(Exception) as err:
        load(doc)
    assert getattr(err.value, "field", None) == "spec.reference.storageUri"


# ----------------------------------------------------------------------------- manifests

@pytest.mark.parametrize("name", ["iris-monitor.yaml", "endpoint-monitor.yaml"])
def test_rendered_objects_pass_kubernetes_validate_strict(name):
    _, _, rendered = render(example(name))
    objects = rendered.all()
    assert objects
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            continue
        kubernetes_validate.validate(obj, "1.32", strict=True)


def test_storage_variants_pass_kubernetes_validate_strict():
    doc = with_storage(model="https://models.example.com/iris/model.joblib", reference="gs://b/iris/ref.csv")
    doc["spec"]["detectors"]["explainer"]["storageUri"] = "file:///srv/explainer"
    doc["spec"]["prometheus"]["serviceMonitor"] = True
    _, _, rendered = render(doc, OperatorConfig(allow_host_path=True, network_policy=True))
    for obj in rendered.all():
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, "1.32", strict=True)
    assert any(o["kind"] == "ServiceMonitor" for o in rendered.objects)
    assert any(o["kind"] == "NetworkPolicy" for o in rendered.objects)


def test_security_context_probes_and_resources():
    plan, _, rendered = render(example())
    for obj in [*rendered.deployments.values(), *rendered.jobs.values()]:
        spec = pod_spec(obj)
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532 and sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "iris-vigil"
        for c in containers(spec):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]  # the one writable scratch dir
            assert c["resources"].get("requests")
    for dep in rendered.deployments.values():
        c = pod_spec(dep)["containers"][0]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # resources from the spec, verbatim; the measured defaults (resources.yaml) where the spec gives none
    model = pod_spec(rendered.deployments["model"])["containers"][0]
    assert model["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    logger = pod_spec(rendered.deployments["logger"])["containers"][0]
    assert logger["resources"] == measured_resources()["logger"]
    # the chart's componentDefaults.resources replaces a row
    custom = OperatorConfig(component_defaults={"resources": {"logger": {"requests": {"memory": "1Gi"},
                                                                         "limits": {"memory": "2Gi"}}}})
    _, _, rendered = render(example(), custom)
    assert pod_spec(rendered.deployments["logger"])["containers"][0]["resources"]["limits"] == {"memory": "2Gi"}


def test_tensorflow_rows_apply_only_where_tensorflow_loads():
    """``NAME-tensorflow`` rows of resources.yaml: a TensorFlow model server, drift with UAE
    preprocessing, an outlier VAE on tensors (conv) or from a given artifact, explainer training against
    a TensorFlow model file; the plain rows otherwise (a dense VAE `vigil train`s is scored with NumPy)."""
    rows = measured_resources()

    def limits(rendered) -> dict:
        out = {name: pod_spec(d)["containers"][0]["resources"] for name, d in rendered.deployments.items()}
        out.update({f"train-{name}": next(c for c in containers(pod_spec(j)) if c["name"] == "train")["resources"]
                    for name, j in rendered.jobs.items()})
        return out

    doc = example()
    del doc["spec"]["model"]["resources"]
    plain = limits(render(doc)[2])
    for key in ("model", "drift", "explainer", "outlier", "train-explainer", "train-outlier"):
        assert plain[key] == rows[key], key
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "cifar", "namespace": "ml"},
           "spec": {"model": {"storageUri": "pvc://models/cifar/model.keras", "format": "tensorflow", "name": "cifar"},
                    "schema": {"shape": [32, 32, 3]}, "reference": {"storageUri": "pvc://models/cifar/reference.npy"},
                    "detectors": {"drift": {"preprocess": {"type": "uae"}}, "outlier": {},
                                  "explainer": {"type": "anchor-image"}}}}
    tf = limits(render(doc)[2])
    assert tf["model"] == rows["model-tensorflow"] and tf["drift"] == rows["drift-tensorflow"]
    assert tf["outlier"] == rows["outlier-tensorflow"] != rows["outlier"]
    assert tf["train-explainer"] == rows["train-explainer-tensorflow"]
    assert tf["explainer"] == rows["explainer"]  # it calls the model server: no TensorFlow of its own
    # every row: a memory request no larger than its limit
    for key, row in rows.items():
        request, limit = (_mib(row[k]["memory"]) for k in ("requests", "limits"))
        assert 0 < request <= limit, key


def test_the_memory_table_of_the_docs_is_resources_yaml():
    """docs/kubernetes.md's "Memory" table shows exactly the request and limit of each row."""
    rows = measured_resources()
    names = {"logger": "logger", "model (scikit-learn)": "model", "outlier (VAE, NumPy)": "outlier",
             "outlier with TensorFlow": "outlier-tensorflow",
             "drift": "drift", "metrics": "metrics", "quality": "quality", "explainer": "explainer",
             "fetch (init containers)": "fetch", "training Job, outlier": "train-outlier",
             "training Job, explainer": "train-explainer"}
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    table = text[text.index("| container | RSS at ready"):].split("\n\n", 1)[0].splitlines()[2:]
    seen = {}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        seen[names[cells[0]]] = (cells[3], cells[4].split()[0])
    assert seen == {key: (rows[key]["requests"]["memory"], rows[key]["limits"]["memory"]) for key in names.values()}


def _mib(quantity: str) -> float:
    return float(quantity[:-2]) * {"Mi": 1, "Gi": 1024}[quantity[-2:]]


def test_objects_carry_the_plan():
    plan, _, rendered = render(example())
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in rendered.all()}
    for comp in plan.components:
        cm = by_name[("ConfigMap", f"iris-{comp.name}")]
        assert cm["data"] == comp.env
        dep = rendered.deployments[comp.name]
        c = pod_spec(dep)["containers"][0]
        assert c["command"] == comp.command
        assert c["envFrom"] == [{"configMapRef": {"name": f"iris-{comp.name}"}}]
        role = "vigil-detectors" if comp.image_role == "detectors" else "vigil-server"
        assert c["image"] == f"ghcr.io/vigil-monitor/{role}:0.1.0"
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations[manifests.A_DIGEST] == comp.digest()
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert dep["spec"]["replicas"] == comp.replicas
        svc = by_name[("Service", f"iris-{comp.name}")]
        assert svc["spec"]["ports"][0]["port"] == 8080 and svc["spec"]["ports"][0]["targetPort"] == "http"


def test_labels_and_selectors():
    _, _, rendered = render(example())
    for obj in rendered.all():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "vigil"
        assert labels["app.kubernetes.io/instance"] == "iris"
        assert labels["app.kubernetes.io/managed-by"] == "vigil-operator"
        assert labels["app.kubernetes.io/part-of"] == "vigil"
    for name, dep in rendered.deployments.items():
        selector = dep["spec"]["selector"]["matchLabels"]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert selector["app.kubernetes.io/component"] == name
        svc = next(o for o in rendered.objects if o["kind"] == "Service" and o["metadata"]["name"] == f"iris-{name}")
        assert svc["spec"]["selector"] == selector
    # one selector per component: no Service selects another component's pods
    selectors = [json.dumps(d["spec"]["selector"], sort_keys=True) for d in rendered.deployments.values()]
    assert len(set(selectors)) == len(selectors)


def test_owner_references_from_kopf_adopt():
    _, _, rendered = render(example())
    owner = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
             "metadata": {"name": "iris", "namespace": "default", "uid": "u-1", "labels": {"team": "fraud"}}}
    objs = rendered.all()
    kopf.adopt(objs, owner=owner)
    for obj in objs:
        assert obj["metadata"]["ownerReferences"] == [{"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
                                                       "name": "iris", "uid": "u-1", "controller": True,
                                                       "blockOwnerDeletion": True}]
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"]["team"] == "fraud"


def _mounts(obj: dict, container: Optional[dict] = None) -> dict:
    """mountPath -> (volume, readOnly) of a container (default: the first main container)."""
    spec = pod_spec(obj)
    volumes = {v["name"]: v for v in spec["volumes"]}
    c = container or spec["containers"][0]
    return {m["mountPath"]: (volumes[m["name"]], m.get("readOnly", False)) for m in c["volumeMounts"]}


def _init(obj: dict, name: str) -> dict:
    return next(c for c in pod_spec(obj).get("initContainers", []) if c["name"] == name)


def _claims(mounts: dict) -> dict:
    return {v["persistentVolumeClaim"]["claimName"]: ro for v, ro in mounts.values() if "persistentVolumeClaim" in v}


def test_pvc_storage_is_copied_by_the_init_container_from_a_read_only_claim():
    _, _, rendered = render(example())
    dep = rendered.deployments["model"]
    fetch = _init(dep, "fetch")
    uri = "pvc://models/iris/model.joblib"
    assert fetch["command"] == [*manifests.FETCH_COMMAND, resolve(uri).source, resolve(uri).path]
    assert _claims(_mounts(dep, fetch)) == {"models": True}  # read-only, and only in the init container
    volume = next(v for v in pod_spec(dep)["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert _claims(_mounts(dep)) == {}  # the server never mounts the claim
    volume, ro = _mounts(dep)["/mnt/vigil/data"]
    assert volume == {"name": "data", "emptyDir": {}} and ro is True
    assert _mounts(dep, fetch)["/mnt/vigil/data"][1] is False  # the fetcher fills it
    env = next(o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "iris-model")["data"]
    assert env["VIGIL_MODEL_URI"] == resolve(uri).path


def test_file_storage_is_refused_unless_the_operator_allows_host_paths():
    doc = with_storage(model="file:///srv/models/iris/model.joblib")
    with pytest.raises(SpecError) as err:
        load(doc, CONFIG)
    assert err.value.field == "spec.model.storageUri" and "--allow-host-path" in str(err.value)
    doc["spec"]["model"]["storageUri"] = "/srv/models/iris/model.joblib"  # a bare path is a host path too
    with pytest.raises(SpecError, match="allow-host-path"):
        load(doc, CONFIG)
    allowed = OperatorConfig(allow_host_path=True)
    load(with_storage(model="file:///srv/models/iris/model.joblib"), allowed)
    _, _, rendered = render(with_storage(model="file:///srv/models/iris/model.joblib"), allowed)
    dep = rendered.deployments["model"]
    fetch = _init(dep, "fetch")
    (host,) = [(v, ro) for v, ro in _mounts(dep, fetch).values() if "hostPath" in v]
    assert host == ({"name": host[0]["name"], "hostPath": {"path": "/srv/models/iris/model.joblib"}}, True)
    assert not [v for v, _ in _mounts(dep).values() if "hostPath" in v]  # the server reads its own copy


@pytest.mark.parametrize("uri", ["s3://bucket/iris/model.joblib", "gs://bucket/iris/model.joblib",
                                 "https://models.example.com/iris/model.joblib",
                                 "s3://bucket/iris/model.tar.gz"])
def test_remote_storage_is_fetched_by_vigil_fetch(uri):
    _, _, rendered = render(with_storage(model=uri))
    dep = rendered.deployments["model"]
    fetch = _init(dep, "fetch")
    assert fetch["image"] == pod_spec(dep)["containers"][0]["image"]  # no other image to pull
    assert fetch["command"] == [*manifests.FETCH_COMMAND, uri, resolve(uri).path]
    assert fetch["envFrom"] == [{"secretRef": {"name": "vigil-storage", "optional": True}}]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    assert _claims(_mounts(dep, fetch)) == {}


def test_trained_artifacts_and_state_claims():
    plan, placement, rendered = render(example())
    pvcs = {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == "PersistentVolumeClaim"}
    assert set(pvcs) == {"iris-artifacts", "iris-drift-state"}
    assert pvcs["iris-artifacts"]["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}
    assert pvcs["iris-drift-state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    job = rendered.jobs["outlier"]
    # inputs fetched, trained into the Job's own volume, then uploaded by the one writer
    fetch, train = pod_spec(job)["initContainers"]
    (upload,) = pod_spec(job)["containers"]
    assert (fetch["name"], train["name"], upload["name"]) == ("fetch", "train", "upload")
    assert pod_spec(job)["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 2
    cmd = train["command"]
    assert cmd[:4] == ["vigil", "train", "--component", "outlier"]
    assert cmd[cmd.index("--output") + 1] == "/mnt/vigil/out/outlier"
    assert cmd[cmd.index("--reference") + 1] == resolve("pvc://models/iris/reference.csv").path
    assert json.loads(cmd[cmd.index("--options") + 1])["thresholdPercentile"] == 95
    assert _claims(_mounts(job, train)) == {}
    assert upload["command"] == [*manifests.FETCH_COMMAND, "/mnt/vigil/out/outlier",
                                 "/mnt/vigil/sources/pvc/iris-artifacts/outlier"]
    assert _claims(_mounts(job, upload)) == {"iris-artifacts": False}
    assert _mounts(job, upload)["/mnt/vigil/out"][1] is True
    # the outlier detector fetches what the Job wrote; its main container mounts no claim
    outlier = rendered.deployments["outlier"]
    assert _claims(_mounts(outlier, _init(outlier, "fetch"))) == {"iris-artifacts": True}
    assert _claims(_mounts(outlier)) == {}
    cm = next(o for o in rendered.objects if o["metadata"]["name"] == "iris-outlier" and o["kind"] == "ConfigMap")
    assert cm["data"]["VIGIL_OUTLIER_ARTIFACT"] == resolve("pvc://iris-artifacts/outlier").path
    # the drift detector keeps its window on its own claim: writable, one pod, never two at once
    drift = rendered.deployments["drift"]
    assert _claims(_mounts(drift)) == {"iris-drift-state": False}
    assert _mounts(drift)["/mnt/vigil/state"][1] is False
    assert drift["spec"]["strategy"] == {"type": "Recreate"}
    assert rendered.deployments["logger"]["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_trained_artifacts_to_an_artifacts_uri():
    doc = example()
    plan, placement, rendered = render(doc, artifacts_uri="s3://bucket/vigil/iris")
    assert not [o for o in rendered.objects if o["metadata"]["name"] == "iris-artifacts"]
    (upload,) = pod_spec(rendered.jobs["outlier"])["containers"]
    assert upload["command"] == [*manifests.FETCH_COMMAND, "/mnt/vigil/out/outlier", "s3://bucket/vigil/iris/outlier"]
    assert upload["envFrom"] == [{"secretRef": {"name": "vigil-storage", "optional": True}}]
    fetch = _init(rendered.deployments["outlier"], "fetch")
    assert fetch["command"][len(manifests.FETCH_COMMAND)] == "s3://bucket/vigil/iris/outlier"


def test_no_claims_when_nothing_is_trained_or_stateful():
    doc = example()
    doc["spec"]["detectors"] = {"metrics": {"task": "regression"}}
    _, _, rendered = render(doc)
    assert not any(o["kind"] == "PersistentVolumeClaim" for o in rendered.objects)
    assert rendered.jobs == {}


def test_training_job_name_follows_its_inputs_and_never_the_operator_image():
    plan, placement, rendered = render(example())
    doc = example()
    doc["spec"]["detectors"]["outlier"]["epochs"] = 3
    _, _, other = render(doc)
    assert rendered.jobs["outlier"]["metadata"]["name"] != other.jobs["outlier"]["metadata"]["name"]
    assert rendered.jobs["explainer"]["metadata"]["name"] == other.jobs["explainer"]["metadata"]["name"]
    assert all(len(j["metadata"]["name"]) <= 63 for j in rendered.jobs.values())
    long = example()
    long["metadata"]["name"] = "m" * 40
    _, _, rendered_long = render(long)
    assert all(len(j["metadata"]["name"]) <= 63 for j in rendered_long.jobs.values())


def test_custom_model_image_keeps_its_entrypoint_and_v2_probes():
    doc = example()
    doc["spec"]["model"]["image"] = "docker.io/seldonio/mlserver:1.6.1"
    _, _, rendered = render(doc)
    c = pod_spec(rendered.deployments["model"])["containers"][0]
    assert c["image"] == "docker.io/seldonio/mlserver:1.6.1"
    assert "command" not in c
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_images_from_operator_environment(monkeypatch):
    monkeypatch.setenv("VIGIL_OPERATOR_IMAGE_REGISTRY", "registry.local:5000/ml")
    monkeypatch.setenv("VIGIL_OPERATOR_IMAGE_TAG", "1.2.3")
    monkeypatch.setenv("VIGIL_OPERATOR_STATUS_URLS", '{"default/iris/drift": "http://127.0.0.1:9"}')
    config = OperatorConfig()
    assert config.image("server") == "registry.local:5000/ml/vigil-server:1.2.3"
    assert config.image("detectors") == "registry.local:5000/ml/vigil-detectors:1.2.3"
    assert config.status_urls == {"default/iris/drift": "http://127.0.0.1:9"}
    _, _, rendered = render(example(), config)
    assert pod_spec(rendered.deployments["drift"])["containers"][0]["image"] == "registry.local:5000/ml/vigil-detectors:1.2.3"


# ----------------------------------------------------------------------------- merge patches

def test_merge_patch_sets_changes_and_removes_only_what_we_own():
    live = {"metadata": {"name": "x", "resourceVersion": "7", "uid": "u",
                         "annotations": {"vigil.dev/digest": "a", "deployment.kubernetes.io/revision": "3"}},
            "data": {"A": "1", "B": "2"},
            "spec": {"progressDeadlineSeconds": 600, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"spec": {"initContainers": [{"name": "fetch-0"}], "dnsPolicy": "ClusterFirst",
                                           "containers": [{"name": "c", "image": "i:1"}]}}}}
    desired = {"metadata": {"name": "x", "annotations": {}},
               "data": {"A": "1", "C": "3"},
               "spec": {"strategy": {"type": "Recreate"},
                        "template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}}
    patch = merge_patch(live, desired)
    assert patch == {"metadata": {"annotations": {"vigil.dev/digest": None}},
                     "data": {"B": None, "C": "3"},
                     "spec": {"strategy": {"type": "Recreate", "rollingUpdate": None},
                              "template": {"spec": {"containers": [{"name": "c", "image": "i:2"}],
                                                    "initContainers": None}}}}
    assert merge_patch(live, live) == {}


# ----------------------------------------------------------------------------- status

def converged(doc: dict, deployments: dict, training=None, deferred=()) -> Converged:
    monitor = monitor_from_dict(doc)
    placement = KubePlacement(monitor.name, monitor.namespace)
    plan = build_plan(monitor, placement)
    return Converged(monitor=monitor, plan=plan, placement=placement, training=training or {},
                     training_jobs={c: f"iris-{c}-train-x" for c in (training or {})},
                     deferred=list(deferred), deployments=deployments)


def deployment_state(ready: bool, generation: int = 1, observed: int = 1, replicas: int = 1) -> dict:
    n = replicas if ready else 0
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": replicas if observed == generation else 0,
                       "availableReplicas": n}}


def drift_only() -> dict:
    doc = example()
    doc["spec"]["detectors"] = {"drift": {"pValue": 0.05}}
    return doc


def test_rollout_states():
    assert rollout(None) == "Missing"
    assert rollout(deployment_state(True)) == "Available"
    assert rollout(deployment_state(False)) == "Unavailable"
    assert rollout(deployment_state(True, generation=2, observed=1)) == "Progressing"
    assert rollout({"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}) == "ScaledDown"


def test_compose_ready_degraded_progressing():
    deps = {c: deployment_state(True) for c in ("logger", "model", "drift")}
    ok = {c: {"component": c, "ready": True} for c in deps}
    ok["drift"]["drift"] = {"detected": True, "pValue": 0.001, "featuresDrifted": ["petal_length"],
                            "lastCheck": "2024-01-01T00:00:00Z", "windows": 3, "threshold": 0.05}
    status = compose(converged(drift_only(), deps), ok, {}, 4)
    assert status["phase"] == "Ready"
    assert status["components"] == {"logger": "Ready", "model": "Ready", "drift": "Ready"}
    assert status["drift"] == {"detected": True, "pValue": 0.001, "featuresDrifted": ["petal_length"],
                               "lastCheck": "2024-01-01T00:00:00Z", "windows": 3}
    assert status["observedGeneration"] == 4 and status["model"] == "iris"
    types = {c["type"]: c for c in status["conditions"]}
    assert types["Ready"]["status"] == "True" and types["DriftDetected"]["status"] == "True"

    # the drift pod is rolled out but not ready: Degraded
    down = dict(ok, drift=None)
    status2 = compose(converged(drift_only(), deps), down, status, 4)
    assert status2["phase"] == "Degraded" and status2["components"]["drift"] == "Unreachable"
    assert status2["conditions"][0]["lastTransitionTime"]  # changed status: a new transition time

    # the same but while a rollout is under way: Progressing, the component Deploying
    rolling = dict(deps, drift=deployment_state(False, generation=2, observed=1))
    status3 = compose(converged(drift_only(), rolling), down, status, 5)
    assert status3["phase"] == "Progressing" and status3["components"]["drift"] == "Deploying"

    # an answer from a pod whose Deployment is not available does not count as ready
    unavailable = dict(deps, drift=deployment_state(False))
    assert compose(converged(drift_only(), unavailable), ok, {}, 1)["components"]["drift"] == "NotReady"


def test_compose_keeps_transition_time_while_unchanged():
    deps = {c: deployment_state(True) for c in ("logger", "model", "drift")}
    ok = {c: {"component": c, "ready": True} for c in deps}
    first = compose(converged(drift_only(), deps), ok, {}, 1)
    first["conditions"][0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = compose(converged(drift_only(), deps), ok, first, 1)
    assert again["conditions"][0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_compose_training_and_training_failure():
    doc = example()
    deps = {c: deployment_state(True) for c in ("logger", "model", "drift", "metrics")}
    ok = {c: {"component": c, "ready": True} for c in deps}
    status = compose(converged(doc, deps, {"outlier": "Running", "explainer": "Succeeded"},
                               deferred=["outlier"]), ok, {}, 1)
    assert status["phase"] == "Training" and status["components"]["outlier"] == "Training"
    assert status["training"] == {"outlier": "Running", "explainer": "Succeeded"}
    failed = converged(doc, deps, {"outlier": "Failed", "explainer": "Succeeded"}, deferred=["outlier"])
    failed.training_messages["outlier"] = "BackoffLimitExceeded"
    status = compose(failed, ok, {}, 1)
    assert status["phase"] == "Failed" and "iris-outlier-train-x" in status["message"]
    assert status["conditions"][0]["reason"] == "TrainingFailed"


def test_custom_image_readiness_comes_from_its_deployment():
    doc = drift_only()
    doc["spec"]["model"]["image"] = "example.com/server:1"
    deps = {c: deployment_state(True) for c in ("logger", "model", "drift")}
    answers = {"logger": {"ready": True}, "drift": {"ready": True}}  # nothing asked of the model
    assert compose(converged(doc, deps), answers, {}, 1)["components"]["model"] == "Ready"
    deps["model"] = deployment_state(False)
    assert compose(converged(doc, deps), answers, {}, 1)["components"]["model"] == "NotReady"


def test_status_patch_removes_what_went_away():
    old = {"phase": "Ready", "components": {"logger": "Ready", "explainer": "Ready"}, "explainer": {"n": 1},
           "kopf": {"progress": {}}}
    new = {"phase": "Ready", "components": {"logger": "Ready"}}
    assert as_patch(new, old) == {"phase": "Ready", "components": {"logger": "Ready", "explainer": None},
                                  "explainer": None}


def test_job_states():
    assert job_state({}) == ("Running", "")
    assert job_state({"status": {"succeeded": 1}})[0] == "Succeeded"
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] == "Succeeded"
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "m"}]}}) == ("Failed", "m")


# ----------------------------------------------------------------------------- RBAC

RBAC = yaml.safe_load((ROOT / "operator" / "vigil_operator" / "rbac.yaml").read_text())["rules"]


def allowed(group: str, resource: str) -> set[str]:
    out: set[str] = set()
    for rule in RBAC:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            out |= set(rule["verbs"])
    return out


def test_rbac_covers_every_kind_the_operator_manages_and_no_more():
    for kind, (prefix, plural) in ROUTES.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        need = {"get", "list", "create"}
        if kind not in CREATE_ONLY:
            need.add("patch")
        if kind not in NEVER_PRUNE:
            need.add("delete")
        assert allowed(group, plural) == need, kind
    assert allowed("vigil.dev", "modelmonitors") == {"get", "list", "watch", "patch"}
    assert allowed("vigil.dev", "modelmonitors/status") == {"get", "patch"}
    assert allowed("", "events") == {"create"}
    assert allowed("kopf.dev", "kopfpeerings") == {"get", "list", "watch", "patch"}  # peering of the replicas
    for rule in RBAC:  # no wildcards, no secrets, nothing cluster-scoped
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not {"secrets", "namespaces", "customresourcedefinitions", "pods"} & set(rule["resources"])


# ----------------------------------------------------------------------------- every pod template, every variant

def _variants() -> dict[str, dict]:
    """Monitors that shape pods differently: every detector, an endpoint with an explainer to
    train, capture to a claim with several logger replicas, tensors, remote artifacts."""
    endpoint = example("endpoint-monitor.yaml")
    endpoint["spec"]["detectors"]["explainer"] = {"threshold": 0.9}
    capture = example()
    capture["spec"]["logger"]["capture"] = {"storageUri": "pvc://captures/iris"}
    capture["spec"]["logger"]["replicas"] = 2
    capture["spec"]["detectors"]["quality"] = {}
    tensors = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "cifar", "namespace": "ml"},
               "spec": {"model": {"storageUri": "s3://m/cifar/model.keras", "format": "tensorflow", "name": "cifar"},
                        "schema": {"shape": [32, 32, 3]}, "reference": {"storageUri": "s3://m/cifar/reference.npy"},
                        "detectors": {"outlier": {"latentDim": 16}, "drift": {"preprocess": {"type": "uae"}},
                                      "explainer": {"type": "anchor-image"}}}}
    return {"iris": example(), "endpoint": endpoint, "capture": capture, "tensors": tensors}


def _templates(rendered) -> dict[str, tuple[dict, int]]:
    """Every pod template (by owner) with the most pods it may run at once."""
    out = {}
    for name, dep in rendered.deployments.items():
        out[f"Deployment/{name}"] = (dep["spec"]["template"], dep["spec"].get("replicas", 2))  # HPA: more than one
    for name, job in rendered.jobs.items():
        out[f"Job/{name}"] = (job["spec"]["template"], 1)
    return out


#: Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


@pytest.mark.parametrize("variant", sorted(_variants()))
def test_every_pod_meets_the_restricted_pod_security_standard(variant):
    _, _, rendered = render(_variants()[variant])
    for owner, (template, _) in _templates(rendered).items():
        spec = template["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, owner
        assert psc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), owner
        assert not {"hostNetwork", "hostPID", "hostIPC", "hostUsers"} & set(spec), owner
        for vol in spec["volumes"]:
            assert set(vol) - {"name"} <= RESTRICTED_VOLUMES, (owner, vol)
        for c in containers(spec):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and not csc.get("privileged"), (owner, c["name"])
            assert csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add"), (owner, c["name"])
            assert csc.get("runAsUser", psc["runAsUser"]) != 0 and csc.get("runAsNonRoot", True) is True
            assert csc["readOnlyRootFilesystem"] is True, (owner, c["name"])
            assert csc.get("seccompProfile", psc["seccompProfile"])["type"] in ("RuntimeDefault", "Localhost")
            assert not any("hostPort" in p for p in c.get("ports", [])), (owner, c["name"])
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], (owner, c["name"])


@pytest.mark.parametrize("variant", sorted(_variants()))
def test_no_read_write_once_claim_in_two_pods(variant):
    """A ReadWriteOnce claim the operator makes is mounted by one pod template, running at most
    one pod, replaced by Recreate (a rolling update would start the second pod first)."""
    _, _, rendered = render(_variants()[variant])
    modes = {o["metadata"]["name"]: o["spec"]["accessModes"] for o in rendered.objects
             if o["kind"] == "PersistentVolumeClaim"}
    users: dict[str, list[str]] = {}
    for owner, (template, most) in _templates(rendered).items():
        for vol in template["spec"]["volumes"]:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim in modes and "ReadWriteOnce" in modes[claim]:
                users.setdefault(claim, []).append(owner)
                assert most == 1, (claim, owner)
                kind, name = owner.split("/")
                if kind == "Deployment":
                    assert rendered.deployments[name]["spec"]["strategy"] == {"type": "Recreate"}, owner
    assert all(len(owners) == 1 for owners in users.values()), users
    assert users, "every variant has drift, with a state claim of its own"


@pytest.mark.parametrize("variant", sorted(_variants()))
def test_names_and_selectors_do_not_change_with_the_operator_image(variant):
    """An operator upgrade (another image tag) renames nothing, keeps every immutable selector
    and every training Job (so nothing retrains); only images and version labels change."""
    doc = _variants()[variant]
    _, _, old = render(doc, OperatorConfig(image_tag="0.1.0"))
    _, _, new = render(doc, OperatorConfig(image_tag="0.2.0", image_registry="registry.example.com/vigil"))

    def shape(rendered) -> dict:
        return {(o["kind"], o["metadata"]["name"]): (o["spec"].get("selector") if "spec" in o else None)
                for o in rendered.all()}

    assert shape(old) == shape(new)
    assert {j["metadata"]["name"] for j in old.jobs.values()} == {j["metadata"]["name"] for j in new.jobs.values()}
    assert any(c["image"].endswith(":0.2.0") for t, _ in _templates(new).values() for c in containers(t["spec"]))
