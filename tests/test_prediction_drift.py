"""Prediction and label drift (DESIGN §10) against live services on loopback.

A real model server (scikit-learn logistic regression on iris) and a real drift service
with ``target: both`` and label drift: at start-up the drift service runs the model on the
reference through the model server (the reference outputs), then reads response events —
bodies the model server really answered — and feedback truths. A window of responses to
held-out-like rows is not flagged; a window of responses to one class's rows (a shifted
prediction distribution) is flagged as drift of ``prediction`` (chi-squared; p-value equal
to SciPy's on the same counts) and of the ``proba_<class>`` columns; shifted truths are
flagged as label drift. Inputs and outputs are corrected separately.
"""

from __future__ import annotations

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.conftest import cloud_event, serve_ready
from tests.servers import metric_value, serve_app
from vigil.events import FEEDBACK, RESPONSE, v2_request
from vigil.modelserver.app import create_app as model_app
from vigil.modelserver.settings import ModelServerSettings
from vigil_detectors.drift.service import create_app as drift_app
from vigil_detectors.drift.settings import DriftSettings

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]
WINDOW = 90


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    d = tmp_path_factory.mktemp("iris")
    data = load_iris()
    x, y = data.data, data.target
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), d / "model.joblib")
    pd.DataFrame(x, columns=NAMES).to_csv(d / "reference.csv", index=False)
    return {"dir": d, "x": x, "y": y}


def post(client: httpx.Client, body: dict, ce_type: str) -> httpx.Response:
    msg = cloud_event(body, ce_type)
    return client.post("/", headers=dict(msg.headers), content=msg.body)


def test_shifted_predictions_are_flagged_unshifted_are_not(iris):
    rng = np.random.default_rng(0)
    x, y = iris["x"], iris["y"]
    with serve_app(model_app(ModelServerSettings(uri=str(iris["dir"] / "model.joblib"), name="iris"))) as model_url:
        settings = DriftSettings(monitor="t", namespace="ns", feature_names=NAMES,
                                 reference=str(iris["dir"] / "reference.csv"), window_size=WINDOW, max_age_seconds=0,
                                 target="both", model_url=model_url, model_name="iris", task="classification",
                                 classes=CLASSES, labels=True)
        with serve_ready(drift_app(settings)) as drift, httpx.Client(base_url=model_url, timeout=30) as model:
            status = drift.get("/status").json()["drift"]
            assert status["outputs"]["tests"] == ["chi2", "ks", "ks", "ks"]
            assert status["outputs"]["referenceSize"] == len(x) and status["labels"]["tests"] == ["chi2"]

            def respond(rows: np.ndarray) -> httpx.Response:
                reply = None
                for i in range(0, len(rows), 10):  # what the model server really answers, as response events
                    r = model.post("/v2/models/iris/infer", json=v2_request(rows[i:i + 10]))
                    assert r.status_code == 200
                    reply = post(drift, r.json(), RESPONSE)
                    assert reply.status_code in (200, 202), reply.text
                return reply

            # unshifted: rows drawn from the reference's own distribution
            same = x[rng.integers(0, len(x), WINDOW)]
            block = respond(same).json()["drift"]
            assert block["target"] == "outputs" and not block["detected"], block
            # shifted: nearly every response is "virginica"
            shifted = np.concatenate([x[y == 2][rng.integers(0, 50, WINDOW - 6)], x[y == 0][:6]])
            block = respond(shifted).json()["drift"]
            assert block["detected"] and "prediction" in block["featuresDrifted"], block
            assert {"proba_setosa", "proba_virginica"} <= set(block["featuresDrifted"])
            # the prediction p-value equals SciPy's chi-squared on the same class counts
            ref_pred = model.post("/v2/models/iris/infer", json=v2_request(x)).json()["outputs"][0]["data"]
            win_pred = model.post("/v2/models/iris/infer", json=v2_request(shifted)).json()["outputs"][0]["data"]
            table = np.array([np.bincount(ref_pred, minlength=3), np.bincount(win_pred, minlength=3)])
            table = table[:, table.sum(axis=0) > 0]
            assert block["features"]["prediction"]["pValue"] == pytest.approx(chi2_contingency(table)[1], rel=1e-9)
            assert block["threshold"] == pytest.approx(0.05 / 4)  # Bonferroni over the 4 output features only

            # label drift: truths of the reference's shares pass, one class only drifts
            def feedback(truths: np.ndarray) -> httpx.Response:
                reply = None
                for i in range(0, len(truths), 15):
                    reply = post(drift, {"truth": truths[i:i + 15].tolist()}, FEEDBACK)
                    assert reply.status_code in (200, 202), reply.text
                return reply

            assert not feedback(y[rng.integers(0, len(y), WINDOW)]).json()["drift"]["detected"]
            labels = feedback(np.full(WINDOW, 1)).json()["drift"]
            assert labels["target"] == "labels" and labels["featuresDrifted"] == ["label"]

            status = drift.get("/status").json()["drift"]
            assert status["detected"] and status["windows"] == 0  # no request event: the inputs never checked
            assert {"prediction", "label"} <= set(status["featuresDrifted"])
            assert status["outputs"]["windows"] == 2 and status["labels"]["windows"] == 2
            text = drift.get("/metrics").text
            assert metric_value(text, "vigil_drift_detected") == 1
            assert metric_value(text, "vigil_drift_p_value", feature="prediction") == \
                pytest.approx(block["features"]["prediction"]["pValue"])
            assert metric_value(text, "vigil_drift_score", feature="proba_setosa", statistic="ks") is not None
            # a response of the wrong width is a counted 400, the window untouched
            bad = post(drift, {"outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [1]}]},
                       RESPONSE)
            assert bad.status_code == 400 and bad.json()["reason"] == "feature_count"
            assert drift.get("/status").json()["drift"]["outputs"]["fill"] == 0


def test_a_monitor_with_target_outputs_sends_responses_and_feedback_to_drift(tmp_path):
    from vigil.local import local_plan
    from vigil.spec import monitor_from_dict

    (tmp_path / "m.joblib").write_bytes(b"")
    (tmp_path / "r.csv").write_text(",".join(NAMES) + "\n1,2,3,4\n")
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "m"},
           "spec": {"model": {"storageUri": f"file://{tmp_path}/m.joblib"}, "schema": {"featureNames": NAMES},
                    "reference": {"storageUri": f"file://{tmp_path}/r.csv"},
                    "detectors": {"drift": {"target": "outputs"}, "metrics": {"task": "classification"}}}}

    def planned(d):
        plan, _ = local_plan(monitor_from_dict(d), tmp_path, tmp_path, 8080)
        return {s.name: s.types for s in plan.get("logger").settings.sinks}, plan.get("drift").settings

    sinks, drift = planned(doc)
    assert sinks["drift"] == ["response", "feedback"]
    assert drift.target == "outputs" and drift.labels and drift.model_url and drift.task == "classification"
    doc["spec"]["detectors"]["drift"] = {}
    sinks, drift = planned(doc)
    assert sinks["drift"] == ["request"] and drift.target == "inputs"
