"""`vigil train` (`vigil_detectors.train.train_component`): artifacts that fresh processes load and use.

Each artifact is trained here from a reference file the way `vigil train --component …`
does it, then served by a NEW process (``vigil serve``-style subprocess, settings from
the environment the plan gives that component) that answers real CloudEvents. Training
is kept tiny (few epochs, a few hundred rows).
"""

from __future__ import annotations

import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.servers import serve_component
from vigil.data import DataError
from vigil.events import REQUEST
from vigil.plan import build_plan
from vigil.spec import monitor_from_dict
from vigil_detectors.train import categorical_indices, train_component

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = ["a", "b", "c", "d"]


def table(n: int, seed: int) -> pd.DataFrame:
    """Reference-like data: correlated features on different scales, plus a label column to ignore."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    c = rng.normal(100, 20, n)
    return pd.DataFrame({"label": rng.integers(0, 3, n), "d": c / 10 + rng.normal(0, 0.5, n),
                         "a": a, "c": c, "b": 2 * a + rng.normal(0, 0.3, n)})


def post(url: str, rows: np.ndarray, id: str = "e") -> httpx.Response:
    headers = {"ce-specversion": "1.0", "ce-type": REQUEST, "ce-source": "/test", "ce-id": id,
               "content-type": "application/json"}
    return httpx.post(url + "/", headers=headers, content=json.dumps({"instances": rows.tolist()}), timeout=30)


class Placement:
    """Where build_plan puts things for this test: artifacts in tmp, files as plain paths."""

    def __init__(self, root):
        self.root = root

    def port(self, component):
        return 0

    def url(self, component):
        return f"http://127.0.0.1:9/{component}"

    def path(self, uri):
        return None if uri is None else str(uri).removeprefix("file://")

    def artifact_uri(self, component):
        return f"file://{self.root / 'artifacts' / component}"

    def state_dir(self, component):
        return str(self.root / "state" / component)


@pytest.fixture(scope="module")
def monitor_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    table(500, seed=0).to_parquet(root / "reference.parquet")
    table(500, seed=0).to_csv(root / "reference.csv", index=False)
    return root


def plan_for(root, detectors: dict):
    monitor = monitor_from_dict({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "trained"},
        "spec": {"model": {"endpoint": "http://127.0.0.1:9"}, "schema": {"featureNames": FEATURES},
                 "reference": {"storageUri": f"file://{root / 'reference.parquet'}"}, "detectors": detectors}})
    return build_plan(monitor, Placement(root))


def test_outlier_artifact_from_vigil_train_is_served_by_a_fresh_process(monitor_dir):
    plan = plan_for(monitor_dir, {"outlier": {"thresholdPercentile": 80, "epochs": 5, "latentDim": 2}})
    [step] = plan.training
    out = monitor_dir / "artifacts" / "outlier"
    lines: list[str] = []
    train_component(step.component, Placement(monitor_dir).path(step.reference_uri),
                    Placement(monitor_dir).path(step.output_uri), step.options, feature_names=FEATURES,
                    progress=lines.append)
    assert (out / "meta.dill").is_file() and (out / "model" / "encoder_net.h5").is_file()
    assert any("epoch 5/5" in line for line in lines) and any("threshold" in line for line in lines)
    assert not [p for p in monitor_dir.iterdir() if p.name.startswith(".")], "temporary directories left behind"

    reference = table(500, seed=0)[FEATURES].to_numpy()
    fresh = table(400, seed=5)[FEATURES].to_numpy()
    far = fresh[:20].copy()
    far[:, 2] += 10 * reference[:, 2].std()
    env = plan.get("outlier").env
    assert env["VIGIL_OUTLIER_ARTIFACT"] == str(out)
    with serve_component("outlier", env) as url:
        normal_flags = post(url, fresh, "normal").json()["data"]["is_outlier"]
        reply = post(url, far, "far").json()["data"]
        status = httpx.get(url + "/status").json()
    # threshold at the 80th percentile of the reference: about 20 % of reference-like rows are flagged.
    # (Scores are compared in standardized units: without the saved scaler, feature c would dominate.)
    assert 0.08 <= np.mean(normal_flags) <= 0.35, np.mean(normal_flags)
    assert all(reply["is_outlier"]), reply["instance_score"]
    assert status["ready"] and status["outliers"]["seen"] == len(fresh) + len(far)
    assert status["outliers"]["threshold"] == pytest.approx(reply["threshold"])


def test_drift_artifact_from_vigil_train_is_served_by_a_fresh_process(monitor_dir):
    out = monitor_dir / "drift-artifact"
    lines: list[str] = []
    train_component("drift", monitor_dir / "reference.csv", out, {"pValue": 0.01, "correction": "bonferroni"},
                    feature_names=FEATURES, progress=lines.append)
    assert any("saved" in line for line in lines)
    env = {"VIGIL_DRIFT_ARTIFACT": str(out), "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES),
           "VIGIL_DRIFT_WINDOW_SIZE": "200", "VIGIL_DRIFT_MAX_AGE_SECONDS": "0"}
    shifted = table(200, seed=9)[FEATURES].to_numpy()
    shifted[:, 0] += 1.5
    with serve_component("drift", env) as url:
        assert post(url, table(200, seed=8)[FEATURES].to_numpy(), "same").status_code in (200, 202)
        first = httpx.get(url + "/status").json()["drift"]
        assert post(url, shifted, "shifted").status_code in (200, 202)
        second = httpx.get(url + "/status").json()["drift"]
    assert first["windows"] == 1 and not first["detected"]
    assert first["statistic"] == "ks" and first["referenceSize"] == 500  # the saved reference came back
    assert second["windows"] == 2 and second["detected"] and "a" in second["featuresDrifted"]


def test_reference_problems_are_reported_before_any_training(monitor_dir, tmp_path):
    with pytest.raises(DataError, match="missing column"):
        train_component("outlier", monitor_dir / "reference.csv", tmp_path / "x", {}, feature_names=["a", "zzz"],
                        progress=lambda m: None)
    with pytest.raises(ValueError, match="cannot train"):
        train_component("metrics", monitor_dir / "reference.csv", tmp_path / "x", {}, progress=lambda m: None)
    assert not (tmp_path / "x").exists()


def test_retraining_replaces_the_artifact_atomically(monitor_dir, tmp_path):
    from alibi_detect.saving import load_detector

    out = tmp_path / "outlier"
    train_component("outlier", monitor_dir / "reference.csv", out, {"epochs": 1, "thresholdPercentile": 50},
                    feature_names=FEATURES, progress=lambda m: None)
    low = load_detector(str(out)).threshold
    train_component("outlier", monitor_dir / "reference.csv", out, {"epochs": 1, "thresholdPercentile": 99},
                    feature_names=FEATURES, progress=lambda m: None)
    od = load_detector(str(out))
    assert od.threshold > low
    assert od.meta["vigil"]["feature_names"] == FEATURES and od.meta["vigil"]["threshold_percentile"] == 99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlier"]


def test_categorical_block_to_indices():
    assert categorical_indices({"b": 3, "d": ["x", "y"], "2": None}, FEATURES) == {1: 3, 3: 2, 2: None}
    with pytest.raises(ValueError, match="zzz"):
        categorical_indices({"zzz": 2}, FEATURES)


def test_explainer_is_trained_through_the_explainer_engineers_hook(monitor_dir, tmp_path):
    """`train_component("explainer")` passes the schema and the model to `train_explainer`; alibi loads the result."""
    import joblib
    from alibi.saving import load_explainer
    from sklearn.linear_model import LogisticRegression

    frame = table(500, seed=0)
    model = LogisticRegression(max_iter=500).fit(frame[FEATURES], (frame["a"] > 0).astype(int))
    joblib.dump(model, tmp_path / "model.joblib")
    out = train_component("explainer", monitor_dir / "reference.csv", tmp_path / "explainer", {"threshold": 0.9},
                          feature_names=FEATURES, categorical={}, model=str(tmp_path / "model.joblib"),
                          model_format="sklearn", progress=lambda m: None)
    explainer = load_explainer(str(out), predictor=lambda x: model.predict(pd.DataFrame(x, columns=FEATURES)))
    assert explainer.feature_names == FEATURES
    explanation = explainer.explain(frame[FEATURES].to_numpy()[0], threshold=0.9)
    assert explanation.anchor and explanation.precision >= 0.9
