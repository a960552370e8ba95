"""docs/kubernetes.md, checked as far as a machine without Docker or a cluster can.

- every `helm` and `kubectl` command in it parses with the real binaries (run with
  `--help` appended: cobra rejects unknown commands and flags before printing help);
- every `helm install|upgrade ... charts/vigil` renders with its `--set` values;
- the manifests it applies pass `kubernetes-validate --strict`;
- its data-preparation snippet runs and writes what examples/iris-monitor.yaml reads;
- the images it builds are the ones the chart and the operator name, and kind-config.yaml
  has kind's v1alpha4 shape.
`kind` and `docker` themselves cannot run here; their command lines are checked as text.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.tools import helm_path, kubectl_path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "kubernetes.md"
CHART = ROOT / "charts" / "vigil"

pytestmark = pytest.mark.helm


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)


def commands() -> list[str]:
    """Shell commands of the bash blocks, continuation lines joined, heredoc bodies left out."""
    out = []
    for block in bash_blocks():
        lines = iter(block.splitlines())
        for line in lines:
            while line.rstrip().endswith("\\"):
                line = line.rstrip()[:-1] + " " + next(lines).strip()
            heredoc = re.search(r"<<'?(\w+)'?", line)
            if heredoc:
                for body in lines:
                    if body.strip() == heredoc.group(1):
                        break
            if line.strip():
                out.append(line.strip())
    return out


def heredocs(command: str) -> list[str]:
    """Bodies of the heredocs fed to commands starting with `command`."""
    found = []
    for block in bash_blocks():
        for m in re.finditer(r"^([^\n]*?)<<'(\w+)'\n(.*?)\n\2$", block, flags=re.S | re.M):
            if m.group(1).strip().startswith(command):
                found.append(m.group(3))
    return found


def _argv(line: str) -> list[str]:
    line = re.sub(r"\s#\s.*$", "", line)  # trailing comment
    line = line.split(" | ")[0].split(";")[0]
    line = re.sub(r"\s*(>/dev/null|2>&1|&)\s*$", "", line).strip()
    line = re.sub(r"\s*>/dev/null\s*", " ", line).strip()
    line = re.sub(r"<<'?\w+'?", "", line).strip()
    return shlex.split(line)


def tool_commands(tool: str) -> list[list[str]]:
    return [_argv(c) for c in commands() if c.startswith(tool + " ")]


def test_doc_is_marked_as_needing_docker():
    head = DOC.read_text()[:600]
    assert "needs Docker" in head


@pytest.mark.parametrize("tool", ["helm", "kubectl"])
def test_every_command_parses(tool):
    binary = helm_path() if tool == "helm" else kubectl_path()
    found = tool_commands(tool)
    assert len(found) >= (6 if tool == "helm" else 10)
    for argv in found:
        result = subprocess.run([binary, *argv[1:], "--help"], capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr}"
        assert "unknown" not in result.stderr.lower(), f"{' '.join(argv)}:\n{result.stderr}"


def test_vigil_helm_commands_render():
    installs = [a for a in tool_commands("helm") if a[1] in ("install", "upgrade") and "charts/vigil" in a]
    assert installs
    for argv in installs:
        sets = [a for i, a in enumerate(argv) if argv[i - 1] == "--set"]
        args = [x for s in sets for x in ("--set", s)]
        if "--reuse-values" in argv:
            continue  # an upgrade of what the install set
        result = subprocess.run([helm_path(), "template", "vigil", str(CHART), *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
        if "monitoring.podMonitor.enabled=true" in sets:
            assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_applied_manifests_are_valid():
    bodies = heredocs("kubectl apply")
    assert bodies
    for body in bodies:
        for doc in yaml.safe_load_all(body):
            kubernetes_validate.validate(doc, "1.32.0", strict=True)
    pv, pvc = list(yaml.safe_load_all(bodies[0]))
    assert pv["spec"]["claimRef"] == {"namespace": pvc["metadata"]["namespace"], "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    # the claim is the one examples/iris-monitor.yaml reads, the path is kind's node mount
    monitor = yaml.safe_load((ROOT / "examples" / "iris-monitor.yaml").read_text())
    assert monitor["spec"]["model"]["storageUri"].startswith(f"pvc://{pvc['metadata']['name']}/iris/")
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    mounts = kind["nodes"][0]["extraMounts"]
    assert pv["spec"]["hostPath"]["path"] in [m["containerPath"] for m in mounts]


def test_data_preparation_writes_what_the_monitor_reads(tmp_path):
    (snippet,) = heredocs("python")
    (tmp_path / "kind-data" / "iris").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-"], input=snippet, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    monitor = yaml.safe_load((ROOT / "examples" / "iris-monitor.yaml").read_text())
    host = yaml.safe_load((ROOT / "kind-config.yaml").read_text())["nodes"][0]["extraMounts"][0]["hostPath"]
    written = {}
    for key in ("model", "reference"):
        uri = monitor["spec"][key]["storageUri"]
        sub = uri.split("://", 1)[1].split("/", 1)[1]  # pvc://models/<sub>
        written[key] = tmp_path / host / sub
        assert written[key].is_file(), f"{uri} -> {host}/{sub} not written"
    # the files are what the services read: the reference table with the monitor's features
    from vigil.data import load_table

    table = load_table(written["reference"], monitor["spec"]["schema"]["featureNames"])
    assert table.shape[1] == len(monitor["spec"]["schema"]["featureNames"]) and len(table) >= 100


def test_images_are_the_charts():
    text = DOC.read_text()
    builds = re.findall(r"docker build -f (\S+)\s+-t (\S+) \.", text)
    assert {Path(f).name for f, _ in builds} == {"operator.Dockerfile", "server.Dockerfile", "detectors.Dockerfile"}
    for dockerfile, _ in builds:
        assert (ROOT / dockerfile).is_file()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    expected = {f"{values['images']['registry']}/{values['images'][role]}:{chart['appVersion']}"
                for role in ("operator", "server", "detectors")}
    assert {tag for _, tag in builds} == expected
    load = re.search(r"kind load docker-image --name (\S+) \\\n((?:\s+\S+ ?\\?\n?)+)", text)
    assert load and set(load.group(2).replace("\\", " ").split()) == expected
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert load.group(1) == kind["name"]


def test_kind_config_shape():
    """kind.x-k8s.io/v1alpha4 Cluster with fields kind knows (no kind binary here)."""
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert kind["kind"] == "Cluster" and kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(kind) <= {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                         "containerdConfigPatches", "kubeadmConfigPatches"}
    for node in kind["nodes"]:
        assert node["role"] in ("control-plane", "worker")
        assert set(node) <= {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches"}
        for mount in node.get("extraMounts", []):
            assert set(mount) <= {"hostPath", "containerPath", "readOnly", "selinuxRelabel", "propagation"}
            assert mount["containerPath"].startswith("/")
    assert "kind create cluster --config kind-config.yaml" in DOC.read_text()
