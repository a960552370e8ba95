"""What a platform team checks in the pods the operator renders (DESIGN §12), statically,
over every object rendered for several monitors and operator settings:

- the chart's pull secrets reach every pod template and every monitor's ServiceAccount;
- no ReadWriteOnce claim is mounted by two pod templates (and a main container never
  mounts a user's claim or a host path: only init containers do, read-only);
- artifacts are read-only wherever they are only read;
- every container, init containers included, has requests and limits;
- a training Job's pods are never selected by a Deployment or Service;
- object names do not change with the operator's image (an upgrade never retrains);
- every pod meets the "restricted" Pod Security Standard;
- pod controls: componentDefaults, merged as documented (`vigil_operator.podcontrols`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from vigil.plan import build_plan
from vigil.spec import monitor_from_dict
from vigil_operator import manifests, podcontrols
from vigil_operator.config import OperatorConfig
from vigil_operator.placement import KubePlacement

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"imagePullSecrets": [{"name": "platform-regcred"}], "nodeSelector": {"pool": "ml"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
            "annotations": {"team": "ml-platform"}, "labels": {"cost-center": "42"},
            "serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/models"}}
CONFIGS = {
    "defaults": OperatorConfig(),
    "platform": OperatorConfig(component_defaults=DEFAULTS, network_policy=True, operator_namespace="vigil-system"),
}


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def monitors() -> dict[str, dict]:
    iris = example("iris-monitor.yaml")
    remote = copy.deepcopy(iris)
    remote["spec"]["model"]["storageUri"] = "s3://models/iris/model.tar.gz"
    remote["spec"]["reference"]["storageUri"] = "https://data.example.com/iris/reference.csv"
    custom = copy.deepcopy(iris)
    custom["spec"]["model"]["image"] = "docker.io/seldonio/mlserver:1.6.1"
    return {"iris": iris, "endpoint": example("endpoint-monitor.yaml"), "remote": remote, "custom": custom}


def render(doc: dict, config: OperatorConfig, artifacts_uri=None) -> manifests.Rendered:
    monitor = monitor_from_dict(doc)
    placement = KubePlacement(monitor.name, monitor.namespace, artifacts_uri=artifacts_uri)
    return manifests.render(build_plan(monitor, placement), placement, config)


CASES = [pytest.param(m, c, id=f"{m}-{c}") for m in monitors() for c in CONFIGS]


def templates(rendered: manifests.Rendered) -> dict[str, dict]:
    out = {f"Deployment/{d['metadata']['name']}": d["spec"]["template"] for d in rendered.deployments.values()}
    out.update({f"Job/{j['metadata']['name']}": j["spec"]["template"] for j in rendered.jobs.values()})
    return out


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def claim_mounts(spec: dict, container: dict) -> dict[str, bool]:
    """claim name -> readOnly, for the claims one container mounts."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    out = {}
    for m in container.get("volumeMounts", []):
        pvc = volumes[m["name"]].get("persistentVolumeClaim")
        if pvc:
            out[pvc["claimName"]] = bool(m.get("readOnly")) or bool(pvc.get("readOnly"))
    return out


@pytest.mark.parametrize("name, config", CASES)
def test_pull_secrets_reach_every_pod_and_service_account(name, config):
    rendered = render(monitors()[name], CONFIGS[config])
    want = CONFIGS[config].component_defaults.get("imagePullSecrets", [])
    for where, template in templates(rendered).items():
        assert template["spec"].get("imagePullSecrets", []) == want, where
    (sa,) = [o for o in rendered.objects if o["kind"] == "ServiceAccount"]
    assert sa.get("imagePullSecrets", []) == want
    for template in templates(rendered).values():
        assert template["spec"]["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize("name, config", CASES)
def test_no_read_write_once_claim_in_two_pod_templates(name, config):
    rendered = render(monitors()[name], CONFIGS[config])
    modes = {o["metadata"]["name"]: o["spec"]["accessModes"] for o in rendered.objects
             if o["kind"] == "PersistentVolumeClaim"}
    users: dict[str, list[str]] = {}
    for where, template in templates(rendered).items():
        for claim in {v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]
                      if "persistentVolumeClaim" in v}:
            users.setdefault(claim, []).append(where)
    for claim, mode in modes.items():
        if "ReadWriteOnce" in mode:
            assert len(users.get(claim, [])) <= 1, f"{claim} (RWO) in {users[claim]}"
    # and the one pod template holding a state claim never runs twice at once
    for dep in rendered.deployments.values():
        if any(c in modes and "ReadWriteOnce" in modes[c] for c in
               (v.get("persistentVolumeClaim", {}).get("claimName") for v in dep["spec"]["template"]["spec"]["volumes"])):
            assert dep["spec"]["replicas"] <= 1 and dep["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("name, config", CASES)
def test_artifacts_are_read_only_where_they_are_only_read(name, config):
    rendered = render(monitors()[name], CONFIGS[config])
    owned_writable = {f"{n}-drift-state" for n in ("iris", "fraud")}  # a detector's own state
    for where, template in templates(rendered).items():
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            if where.startswith("Job/"):
                continue  # the upload container is the one writer (checked below)
            for m in c["volumeMounts"]:
                volume = volumes[m["name"]]
                assert "hostPath" not in volume, where
                if m["mountPath"] == "/tmp":
                    continue
                pvc = volume.get("persistentVolumeClaim")
                if pvc:
                    assert pvc["claimName"] in owned_writable, f"{where} mounts {pvc['claimName']}"
                else:
                    assert m.get("readOnly") is True, f"{where}: {m}"
        for c in spec.get("initContainers", []):
            for claim, ro in claim_mounts(spec, c).items():
                assert ro, f"{where}/{c['name']} mounts {claim} writable"
        if where.startswith("Job/"):
            (upload,) = spec["containers"]
            assert upload["command"][:3] == list(manifests.FETCH_COMMAND)
            writable = [c for c, ro in claim_mounts(spec, upload).items() if not ro]
            assert writable in ([], ["iris-artifacts"]), writable


@pytest.mark.parametrize("name, config", CASES)
def test_requests_and_limits_on_every_container(name, config):
    for where, template in templates(render(monitors()[name], CONFIGS[config])).items():
        for c in containers(template["spec"]):
            res = c["resources"]
            assert res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"), \
                f"{where}/{c['name']}: {res}"
            assert res["requests"].get("cpu"), f"{where}/{c['name']}"


@pytest.mark.parametrize("name, config", CASES)
def test_job_pods_are_never_selected_by_a_deployment_or_service(name, config):
    rendered = render(monitors()[name], CONFIGS[config])
    selectors = [d["spec"]["selector"]["matchLabels"] for d in rendered.deployments.values()]
    selectors += [o["spec"]["selector"] for o in rendered.objects if o["kind"] == "Service"]
    for job in rendered.jobs.values():
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        for sel in selectors:
            assert not sel.items() <= pod_labels.items(), (job["metadata"]["name"], sel)
    # while each Deployment still selects its own pods
    for dep in rendered.deployments.values():
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("name", list(monitors()))
def test_names_do_not_change_with_the_operator_image(name):
    doc = monitors()[name]
    old = render(doc, OperatorConfig(image_tag="0.1.0"))
    new = render(doc, OperatorConfig(image_tag="0.2.0", image_registry="registry.example.com/vigil"))
    names = lambda r: sorted((o["kind"], o["metadata"]["name"]) for o in r.all())  # noqa: E731
    assert names(old) == names(new)
    assert [j["spec"]["template"]["spec"]["containers"][0]["image"] for j in new.jobs.values()] == \
        ["registry.example.com/vigil/vigil-detectors:0.2.0"] * len(new.jobs)
    # the selectors (immutable) do not carry the version either
    for a, b in zip(old.deployments.values(), new.deployments.values(), strict=True):
        assert a["spec"]["selector"] == b["spec"]["selector"]


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


@pytest.mark.parametrize("name, config", CASES)
def test_every_pod_meets_the_restricted_pod_security_standard(name, config):
    for where, template in templates(render(monitors()[name], CONFIGS[config])).items():
        spec = template["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, where
        assert psc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), where
        for v in spec["volumes"]:
            kinds = set(v) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {v}"
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert not sc.get("privileged") and sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert not c.get("ports") or all(not p.get("hostPort") for p in c["ports"])


def test_host_paths_are_the_one_exception_and_only_when_allowed():
    doc = monitors()["iris"]
    doc["spec"]["model"]["storageUri"] = "file:///vigil-data/iris/model.joblib"
    rendered = render(doc, OperatorConfig(allow_host_path=True))
    spec = rendered.deployments["model"]["spec"]["template"]["spec"]
    (host,) = [v for v in spec["volumes"] if "hostPath" in v]
    (fetch,) = spec["initContainers"]
    assert [m for m in fetch["volumeMounts"] if m["name"] == host["name"]][0]["readOnly"] is True
    assert not [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == host["name"]]


def test_component_defaults_reach_every_pod():
    rendered = render(monitors()["iris"], CONFIGS["platform"])
    for where, template in templates(rendered).items():
        spec, meta = template["spec"], template["metadata"]
        assert spec["nodeSelector"] == {"pool": "ml"} and spec["tolerations"] == DEFAULTS["tolerations"], where
        assert meta["annotations"]["team"] == "ml-platform" and meta["labels"]["cost-center"] == "42"
        assert meta["labels"][manifests.L_INSTANCE] == "iris"  # ours stay
    (sa,) = [o for o in rendered.objects if o["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"] == DEFAULTS["serviceAccountAnnotations"]
    (policy,) = [o for o in rendered.objects if o["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchExpressions"][0]["values"] == ["outlier", "drift", "metrics"]
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": manifests.selector("iris", "logger")}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vigil-system"}}} in peers


def test_pod_controls_merge_rules():
    defaults = {"imagePullSecrets": [{"name": "platform"}], "nodeSelector": {"pool": "ml", "zone": "a"},
                "tolerations": [{"key": "a"}], "priorityClassName": "low", "labels": {"x": "1"}}
    monitor = {"imagePullSecrets": [{"name": "team"}], "nodeSelector": {"zone": "b"}, "tolerations": [{"key": "m"}]}
    component = {"tolerations": [{"key": "c"}], "labels": {"y": "2"}, "priorityClassName": "high"}
    merged = podcontrols.merge(defaults, monitor, component)
    assert merged["nodeSelector"] == {"pool": "ml", "zone": "b"}  # maps merge key by key
    assert merged["tolerations"] == [{"key": "c"}]  # other fields: the later layer replaces
    assert merged["priorityClassName"] == "high" and merged["labels"] == {"x": "1", "y": "2"}
    assert merged["imagePullSecrets"] == [{"name": "team"}, {"name": "platform"}]  # the chart's are added
    assert podcontrols.merge({}, {}) == {}
    assert podcontrols.merge({"imagePullSecrets": [{"name": "p"}]}, {"imagePullSecrets": [{"name": "p"}]}) == \
        {"imagePullSecrets": [{"name": "p"}]}


# ----------------------------------------------------------------------------- spec fields

def test_spec_pod_and_component_pod_blocks():
    doc = monitors()["iris"]
    doc["spec"]["pod"] = {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "all"}],
                          "annotations": {"a": "monitor"}, "imagePullSecrets": [{"name": "team"}],
                          "serviceAccountAnnotations": {"iam.gke.io/gcp-service-account": "m@p.iam.gserviceaccount.com"}}
    doc["spec"]["detectors"]["outlier"]["pod"] = {"nodeSelector": {"gpu": "yes"}, "tolerations": [{"key": "gpu"}],
                                                  "priorityClassName": "high", "labels": {"x": "1"},
                                                  "serviceAccountAnnotations": {"outlier": "yes"}}
    rendered = render(doc, CONFIGS["platform"])
    outlier = rendered.deployments["outlier"]["spec"]["template"]
    assert outlier["spec"]["nodeSelector"] == {"pool": "ml", "zone": "a", "gpu": "yes"}  # maps merge
    assert outlier["spec"]["tolerations"] == [{"key": "gpu"}]  # the component's replaces
    assert outlier["spec"]["priorityClassName"] == "high" and outlier["metadata"]["labels"]["x"] == "1"
    assert outlier["spec"]["imagePullSecrets"] == [{"name": "team"}, {"name": "platform-regcred"}]
    job = rendered.jobs["outlier"]["spec"]["template"]  # the training Job runs where its detector runs
    assert job["spec"]["nodeSelector"] == outlier["spec"]["nodeSelector"]
    drift = rendered.deployments["drift"]["spec"]["template"]
    assert drift["spec"]["tolerations"] == [{"key": "all"}] and drift["metadata"]["annotations"]["a"] == "monitor"
    (sa,) = [o for o in rendered.objects if o["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"] == {**DEFAULTS["serviceAccountAnnotations"], "outlier": "yes",
                                             "iam.gke.io/gcp-service-account": "m@p.iam.gserviceaccount.com"}
    # pod controls shape pods, not services: training options (and so Job names) ignore them
    assert rendered.jobs["outlier"]["metadata"]["name"] == render(monitors()["iris"], CONFIGS["platform"]).jobs[
        "outlier"]["metadata"]["name"]


def test_storage_secret_and_artifacts_uri_from_the_spec():
    from vigil_operator.reconcile import load

    doc = monitors()["iris"]
    doc["spec"]["storage"] = {"secretName": "iris-s3", "artifactsUri": "s3://bucket/vigil/iris"}
    monitor = load(doc)
    rendered = render(doc, OperatorConfig(), artifacts_uri=monitor.spec.storage.artifacts_uri)
    for template in templates(rendered).values():
        for c in containers(template["spec"]):
            if c["command"][:3] == list(manifests.FETCH_COMMAND):
                assert c["envFrom"] == [{"secretRef": {"name": "iris-s3", "optional": True}}]
    (upload,) = rendered.jobs["outlier"]["spec"]["template"]["spec"]["containers"]
    assert upload["command"][-1] == "s3://bucket/vigil/iris/outlier"
    assert "iris-artifacts" not in {o["metadata"]["name"] for o in rendered.objects}
    for bad, why in (("https://h/x", "(pvc|s3|gs)"), ("s3://b/a.tar.gz", "directory")):
        doc["spec"]["storage"]["artifactsUri"] = bad
        with pytest.raises(Exception) as err:
            load(doc)
        assert err.value.field == "spec.storage.artifactsUri" and why in str(err.value)


def test_autoscaling_renders_an_hpa_and_a_pdb():
    import kubernetes_validate

    doc = monitors()["iris"]
    doc["spec"]["logger"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70}
    doc["spec"]["detectors"]["outlier"]["autoscaling"] = {"maxReplicas": 3}
    doc["spec"]["model"]["replicas"] = 3
    rendered = render(doc, OperatorConfig())
    by = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    hpa = by[("HorizontalPodAutoscaler", "iris-logger")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-logger"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "replicas" not in rendered.deployments["logger"]["spec"]  # the HPA owns it
    assert ("HorizontalPodAutoscaler", "iris-outlier") in by
    # PDBs where more than one pod runs: the logger (min 2) and the model (3 replicas), not the outlier (min 1)
    pdbs = {n: o for (k, n), o in by.items() if k == "PodDisruptionBudget"}
    assert set(pdbs) == {"iris-logger", "iris-model"}
    assert pdbs["iris-model"]["spec"] == {"minAvailable": 1, "selector": {"matchLabels": manifests.selector("iris", "model")}}
    for obj in rendered.all():
        kubernetes_validate.validate(obj, "1.32", strict=True)


@pytest.mark.parametrize("block, where", [({"drift": {"replicas": 2}}, "detectors.drift.replicas"),
                                          ({"metrics": {"replicas": 2}}, "detectors.metrics.replicas")])
def test_stateful_detectors_are_capped_at_one_replica(block, where):
    from vigil.spec import SpecError

    doc = monitors()["iris"]
    doc["spec"]["detectors"].update(block)
    with pytest.raises(SpecError) as err:
        monitor_from_dict(doc)
    # metrics over HTTP (the default transport): a cross-field check of spec names the field in its message
    # (over JetStream several metrics replicas each take a share of the partitions, test_jetstream_partitions)
    assert err.value.field == f"spec.{where}" or (err.value.field == "spec" and str(err.value).startswith(f"spec: {where}"))
