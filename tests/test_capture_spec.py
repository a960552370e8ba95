"""``spec.logger.capture`` from the spec to the logger's settings, locally and in Kubernetes:
the plan's env, paths per placement, the logger pod's writable claim, the storage Secret for
s3, refused host paths, fields named in errors, and `vigil validate`'s warning."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vigil.local import local_plan
from vigil.logger.settings import LoggerSettings
from vigil.plan import build_plan
from vigil.spec import SpecError, monitor_from_dict
from vigil.validate import validate_file
from vigil_operator import manifests
from vigil_operator.config import OperatorConfig
from vigil_operator.placement import KubePlacement
from vigil_operator.reconcile import load

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("uri", "sample_rate", "format", "rotate_seconds")
CONFIG = OperatorConfig()


def doc(capture=None, **logger) -> dict:
    d = yaml.safe_load((ROOT / "examples" / "iris-monitor.yaml").read_text())
    d["spec"].setdefault("logger", {}).update(logger)
    if capture is not None:
        d["spec"]["logger"]["capture"] = capture
    return d


def local_env(d: dict, tmp_path: Path) -> dict:
    for key in ("model", "reference"):  # local files instead of the example's claims
        d["spec"][key]["storageUri"] = f"{key}.file"
    plan, _ = local_plan(monitor_from_dict(d), tmp_path, tmp_path / "work", 18080)
    return plan.get("logger").env


def test_local_plan_renders_capture_settings_the_logger_reads_back(tmp_path, monkeypatch):
    env = local_env(doc({"storageUri": "captures/iris", "format": "parquet", "rotate": "30s", "sampleRate": 0.25}),
                    tmp_path)
    capture = json.loads(env["VIGIL_LOGGER_CAPTURE"])
    assert {k: capture[k] for k in KEYS} == {"uri": str(tmp_path / "captures" / "iris"), "sample_rate": 0.25, "format": "parquet",
                       "rotate_seconds": 30.0}  # a relative path is beside the monitor file
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    read = LoggerSettings().capture
    assert read is not None and (read.uri, read.format, read.rotate_seconds, read.sample_rate) == (
        capture["uri"], "parquet", 30.0, 0.25)
    # the defaults are the settings' own: rotate 5m, jsonl, every inference
    default = json.loads(local_env(doc({"storageUri": "file:///tmp/cap"}), tmp_path)["VIGIL_LOGGER_CAPTURE"])
    assert {k: default[k] for k in KEYS} == {"uri": "/tmp/cap", "sample_rate": 1.0, "format": "jsonl", "rotate_seconds": 300.0}
    assert "VIGIL_LOGGER_CAPTURE" not in local_env(doc(), tmp_path)  # off unless asked
    assert json.loads(local_env(doc({"storageUri": "s3://bucket/cap"}), tmp_path)["VIGIL_LOGGER_CAPTURE"])["uri"] \
        == "s3://bucket/cap"  # written by the logger itself


@pytest.mark.parametrize("capture, field", [
    ({"storageUri": "/tmp/x", "rotate": "0s"}, "spec.logger.capture.rotate"),  # the settings refuse < 1 s
    ({"storageUri": "/tmp/x", "rotate": "soon"}, "spec.logger.capture.rotate"),
    ({"storageUri": "https://h/x"}, "spec.logger.capture.storageUri"),
    ({"storageUri": "/tmp/x", "sampleRate": 2}, "spec.logger.capture.sampleRate"),
    ({"storageUri": "/tmp/x", "format": "csv"}, "spec.logger.capture.format"),
    ({"rotate": "5m"}, "spec.logger.capture.storageUri"),
    ({"storageUri": "pvc://claim/cap"}, "spec.logger.capture.storageUri"),  # no claims without a cluster
])
def test_bad_capture_blocks_name_their_field(capture, field, tmp_path):
    with pytest.raises(SpecError) as e:
        local_env(doc(capture), tmp_path)
    assert e.value.field.startswith(field), e.value


def render(d: dict, config: OperatorConfig = CONFIG):
    monitor = load(d, config)
    placement = KubePlacement(monitor.name, monitor.namespace)
    plan = build_plan(monitor, placement)
    return plan, manifests.render(plan, placement, config)


def test_operator_mounts_a_capture_claim_writable_in_the_logger_pod_only():
    plan, rendered = render(doc({"storageUri": "pvc://captures/iris/prod"}, replicas=2))
    env = json.loads(plan.get("logger").env["VIGIL_LOGGER_CAPTURE"])
    assert env["uri"] == "/mnt/vigil/capture/pvc/captures/iris/prod"
    pod = rendered.deployments["logger"]["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    (name, claim), = claims.items()
    assert claim == {"claimName": "captures"}  # writable: no readOnly
    (logger,) = pod["containers"]
    mount = next(m for m in logger["volumeMounts"] if m["name"] == name)
    assert mount["mountPath"] == "/mnt/vigil/capture/pvc/captures" and not mount.get("readOnly")
    assert env["uri"].startswith(mount["mountPath"] + "/")
    # each replica writes its own subdirectory: the pod's name from the downward API
    assert {"name": "VIGIL_LOGGER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in logger["env"]
    for component, dep in rendered.deployments.items():
        if component != "logger":
            vols = dep["spec"]["template"]["spec"]["volumes"]
            assert not any(v.get("persistentVolumeClaim", {}).get("claimName") == "captures" for v in vols)
    for obj in rendered.all():
        kubernetes_validate.validate(obj, "1.32", strict=True)


def test_operator_capture_to_s3_gets_the_storage_secret_and_host_paths_are_refused():
    plan, rendered = render(doc({"storageUri": "s3://bucket/captures"}))
    (logger,) = rendered.deployments["logger"]["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": OperatorConfig().storage_secret, "optional": True}} in logger["envFrom"]
    assert json.loads(plan.get("logger").env["VIGIL_LOGGER_CAPTURE"])["uri"] == "s3://bucket/captures"
    (model,) = rendered.deployments["model"]["spec"]["template"]["spec"]["containers"]
    assert len(model["envFrom"]) == 1  # only the writer reads the secret in its main container
    with pytest.raises(SpecError) as e:
        render(doc({"storageUri": "file:///var/captures"}))
    assert e.value.field == "spec.logger.capture.storageUri"
    _, rendered = render(doc({"storageUri": "file:///var/captures"}), OperatorConfig(allow_host_path=True))
    vols = rendered.deployments["logger"]["spec"]["template"]["spec"]["volumes"]
    assert {"path": "/var/captures", "type": "DirectoryOrCreate"} in [v.get("hostPath") for v in vols]


def test_validate_warns_about_an_unwritable_capture_location(tmp_path):
    d = doc()
    for key in ("model", "reference"):
        d["spec"][key]["storageUri"] = str(ROOT / "examples" / "iris-monitor.yaml")  # files that exist
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    path = tmp_path / "monitor.yaml"
    for where, warned in ((str(blocker / "capture"), True), (str(tmp_path / "new" / "capture"), False)):
        d["spec"]["logger"]["capture"] = {"storageUri": where}
        path.write_text(yaml.safe_dump(d))
        _, notes = validate_file(str(path), check_ports=False)
        lines = [n for n in notes if n.startswith("spec.logger.capture.storageUri")]
        assert bool(lines) == warned, notes
        if warned:
            assert "not writable" in lines[0] and "inference is unaffected" in lines[0]
    assert not (tmp_path / "new").exists()  # validate creates nothing
