"""Processes that must stay light never import TensorFlow (or alibi/alibi-detect).

Each module is imported in a fresh interpreter, with the app built where it has one, so
a stray top-level import anywhere beneath it shows up here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "iris-monitor.yaml"
#: This tree's packages first, so the subprocess checks the code under test, not an installed copy.
PYTHONPATH = os.pathsep.join(str(ROOT / d) for d in ("", "operator", "detectors"))

#: A tabular drift service fitted from reference data (one numeric, one declared and one inferred
#: categorical feature, every statistic), served in-process, fed a window that completes a check.
DRIFT_TABULAR = """
import time, uuid, json, tempfile, os
import numpy as np
from fastapi.testclient import TestClient
from vigil_detectors.drift.service import create_app
from vigil_detectors.drift.settings import DriftSettings
rng = np.random.default_rng(0)
ref = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500), rng.integers(0, 2, 500), rng.normal(size=500)])
path = os.path.join(tempfile.mkdtemp(), "ref.npy")
np.save(path, ref)
s = DriftSettings(reference=path, feature_names=["a", "b", "c", "d"], categorical={"1": 3}, window_size=100,
                  max_age_seconds=0, statistic="psi", statistics={"a": "ks", "d": "wasserstein", "c": "hellinger"})
with TestClient(create_app(s)) as c:
    for _ in range(600):
        if c.get("/readyz").status_code == 200:
            break
        time.sleep(0.1)
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/t",
               "ce-type": "dev.vigil.inference.request", "content-type": "application/json"}
    r = c.post("/", headers=headers, content=json.dumps({"instances": ref[:100].tolist()}))
    assert r.status_code == 200, r.text
    assert set(r.json()["drift"]["features"]) == {"a", "b", "c", "d"}
"""
HEAVY = ("tensorflow", "alibi", "alibi_detect", "tf_keras", "keras")

#: The explainer calls the model server as a black box: fitted by `train_explainer` and then
#: served, explaining one instance, it needs alibi but never TensorFlow (vigil.imports).
EXPLAINER = """
import tempfile, joblib, httpx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from tests.conftest import serve_ready, wait_ready
from tests.servers import serve_app
from vigil.events import v2_request
from vigil.modelserver.app import create_app as model_app
from vigil.modelserver.settings import ModelServerSettings
from vigil_detectors.explainer.service import create_app
from vigil_detectors.explainer.settings import ExplainerSettings
from vigil_detectors.explainer.train import train_explainer
x, y = load_iris(return_X_y=True)
d = tempfile.mkdtemp()
joblib.dump(RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y), d + "/m.joblib")
names = ["a", "b", "c", "d"]
train_explainer(x, {"seed": 0}, d + "/m.joblib", d + "/exp", names, {}, model_format="sklearn", progress=lambda m: None)
with serve_app(model_app(ModelServerSettings(uri=d + "/m.joblib", format="sklearn", name="iris"))) as url:
    wait_ready(url, "/v2/health/ready")
    s = ExplainerSettings(artifact=d + "/exp", model_url=url, model_name="iris", feature_names=names, seed=0,
                          threshold=0.9)
    with serve_ready(create_app(s), client_timeout=120) as c:
        r = c.post("/explain", json=v2_request(x[:1]))
        assert r.status_code == 200 and r.json()["anchor"], r.text
import sys
sys.modules.pop("alibi", None)  # alibi itself is expected here; TensorFlow is not
"""

CASES = {
    "cli": "import vigil.cli; vigil.cli.build_parser()",
    "logger": "from vigil.logger.app import create_app; create_app()",
    "model server (sklearn)": "import vigil.modelserver.app, vigil.modelserver.loaders",
    "operator": "import vigil_operator.handlers, vigil_operator.runner, vigil_operator.manifests",
    "status and plan": "import vigil.status, vigil.plan, vigil.local, vigil.demo",
    "operator planning (builds every settings class)": (
        "import yaml, pathlib, vigil_operator.reconcile as r, vigil.plan as p, vigil_operator.placement as pl\n"
        f"m = r.load(yaml.safe_load(pathlib.Path({str(EXAMPLE)!r}).read_text()))\n"
        "p.build_plan(m, pl.KubePlacement(m.name, m.namespace))"),
    "detector frame": "import vigil_detectors.frame",
    "drift/metrics service modules": "import vigil_detectors.drift.service, vigil_detectors.metrics.service",
    "drift service on tabular data (fitted, checking a window)": DRIFT_TABULAR,
    "quality service module": "import vigil_detectors.quality.service",
    "explainer (fitted, served, explaining a sklearn model)": EXPLAINER,
    "planning an image monitor (drift preprocess uae and model-output, anchor-image)": (
        "import vigil.spec as s, vigil.plan as p, vigil.local as l\n"
        "doc = {'kind': 'ModelMonitor', 'metadata': {'name': 'img'}, 'spec': {\n"
        "  'model': {'storageUri': 'file:///m/model.keras', 'format': 'tensorflow'}, 'schema': {'shape': [32, 32, 3]},\n"
        "  'reference': {'storageUri': 'file:///m/ref.npy'}, 'detectors': {\n"
        "    'drift': {'preprocess': {'type': 'uae'}}, 'explainer': {'type': 'anchor-image'}}}}\n"
        "for kind in ('uae', 'model-output'):\n"
        "    doc['spec']['detectors']['drift']['preprocess']['type'] = kind\n"
        "    p.build_plan(s.monitor_from_dict(doc), l.LocalPlacement('/tmp/w', '/tmp'))"),
    "vigil train --component drift": (
        "import numpy as np, tempfile, os\n"
        "from vigil_detectors.train import train_array\n"
        "d = tempfile.mkdtemp()\n"
        "train_array('drift', np.random.default_rng(0).normal(size=(100, 3)), {}, os.path.join(d, 'drift'),"
        " progress=lambda m: None)"),
}


@pytest.mark.parametrize("name", CASES)
def test_no_tensorflow(name):
    code = CASES[name] + f"\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"VIGIL_LOGGER_UPSTREAM": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": PYTHONPATH}, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"{name} imported {out.stdout}"


#: The outlier service on a dense VAE trained by `vigil train` scores with NumPy (`outlier.dense`):
#: served, scoring an event, it imports neither TensorFlow nor alibi-detect.
OUTLIER_TABULAR = """
import json, uuid, sys
from sklearn.datasets import load_wine
from tests.conftest import serve_ready
from vigil_detectors.outlier.service import create_app
from vigil_detectors.outlier.settings import OutlierSettings
x = load_wine(return_X_y=True)[0]
with serve_ready(create_app(OutlierSettings(artifact=sys.argv[1]))) as c:
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/t",
               "ce-type": "dev.vigil.inference.request", "content-type": "application/json"}
    r = c.post("/", headers=headers, content=json.dumps({"instances": x[:3].tolist()}))
    assert r.status_code == 200 and len(r.json()["data"]["instance_score"]) == 3, r.text
"""


@pytest.mark.tensorflow
def test_outlier_service_on_a_dense_vae_loads_no_tensorflow(tmp_path):
    from sklearn.datasets import load_wine

    from vigil_detectors.outlier.train import train_outlier

    artifact = train_outlier(load_wine(return_X_y=True)[0], {"epochs": 1}, tmp_path / "vae", progress=lambda _: None)
    code = OUTLIER_TABULAR + f"\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code, str(artifact)], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH}, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"the outlier service imported {out.stdout}"
