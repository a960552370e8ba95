"""The containers the operator renders, run as local processes with their exact command
lines and environment (the in-pod paths under ``/mnt/vigil`` rooted in a temporary
directory, the Service address of the model server replaced by its loopback address):

- a training Job — ``fetch`` (inputs from the ``models`` claim), ``train`` (the explainer,
  against the fetched model), ``upload`` (to the monitor's artifacts claim) — in order, each
  to success;
- then the model server and explainer Deployments: their ``fetch`` init containers copy
  model and trained artifact from the claims into each pod's own data volume, and the
  servers start from their ConfigMaps and become ready on what was copied.

It proves the paths line up across init containers, Jobs, ConfigMaps and servers, quickly
and without isolation; tests/podrunner.py (tests/test_podrunner_e2e.py) runs the same pods
isolated, from the operator's own objects, end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from tests.servers import free_port, serve_component
from vigil.plan import build_plan
from vigil.spec import monitor_from_dict
from vigil_operator import manifests
from vigil_operator.config import OperatorConfig
from vigil_operator.placement import MOUNT_ROOT, KubePlacement, claim_path

pytestmark = pytest.mark.tensorflow  # the explainer (alibi) trains and serves

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["a", "b", "c"]


def rooted(value: str, root: Path) -> str:
    return value.replace(MOUNT_ROOT, str(root) + MOUNT_ROOT)


def run(container: dict, root: Path) -> None:
    argv = [rooted(a, root) for a in container["command"]]
    # the images' `vigil` and `python` are this interpreter's
    argv = [sys.executable, "-m", "vigil", *argv[1:]] if argv[0] == "vigil" else [sys.executable, *argv[1:]]
    assert argv[1] == "-m"
    result = subprocess.run(argv, capture_output=True, text=True,
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"}, timeout=600)
    assert result.returncode == 0, f"{container['name']}: {result.stderr[-3000:]}"


def test_job_then_pods_run_their_rendered_commands(tmp_path):
    doc = yaml.safe_load((ROOT / "examples" / "iris-monitor.yaml").read_text())
    doc["spec"]["schema"] = {"featureNames": FEATURES}
    doc["spec"]["detectors"] = {"explainer": {"threshold": 0.9}}
    monitor = monitor_from_dict(doc)
    placement = KubePlacement(monitor.name, monitor.namespace)
    plan = build_plan(monitor, placement)
    rendered = manifests.render(plan, placement, OperatorConfig())

    # the user's claim "models", as its init containers see it
    models = Path(rooted(claim_path("models", "iris"), tmp_path))
    models.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 3))
    pd.DataFrame(ref, columns=FEATURES).to_csv(models / "reference.csv", index=False)
    joblib.dump(LogisticRegression().fit(ref, (ref[:, 0] > 0).astype(int)), models / "model.joblib")
    Path(rooted(claim_path("iris-artifacts"), tmp_path)).mkdir(parents=True)  # the (empty) artifacts claim

    # the training Job: init containers in order, then its main container
    job = rendered.jobs["explainer"]["spec"]["template"]["spec"]
    for container in job["initContainers"] + job["containers"]:
        run(container, tmp_path)
    artifact = Path(rooted(claim_path("iris-artifacts", "explainer"), tmp_path))
    assert artifact.is_dir() and any(artifact.iterdir())

    # the pods: each fetches into its own data volume (a directory of its own here)
    configmaps = {o["metadata"]["name"]: o["data"] for o in rendered.objects if o["kind"] == "ConfigMap"}
    envs = {}
    for name in ("model", "explainer"):
        pod_root = tmp_path / "pods" / name
        for container in rendered.deployments[name]["spec"]["template"]["spec"]["initContainers"]:
            # a pod sees the claims at the same paths as the Job did
            argv = [rooted(a, tmp_path) if "/sources/" in a else rooted(a, pod_root) for a in container["command"]]
            assert argv[:3] == list(manifests.FETCH_COMMAND)
            result = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
        envs[name] = {k: rooted(v, pod_root) for k, v in configmaps[f"iris-{name}"].items()}
    ports = {"model": free_port(), "explainer": free_port()}
    envs["explainer"]["VIGIL_EXPLAINER_MODEL_URL"] = f"http://127.0.0.1:{ports['model']}"  # the Service, resolved
    with serve_component("model", env=envs["model"], port=ports["model"], ready_path="/v2/health/ready",
                         timeout=120), \
            serve_component("explainer", env=envs["explainer"], port=ports["explainer"], timeout=180) as explainer:
        r = httpx.post(f"{explainer}/explain", json={"instances": [[0.5, -0.2, 0.1]]}, timeout=120)
        assert r.status_code == 200, r.text
        assert "anchor" in r.text
