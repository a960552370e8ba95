"""The model server over real HTTP: V2 and V1 inference for scikit-learn, XGBoost and
Keras models, batches, metadata and health, and bad input answered with 4xx while the
server keeps serving."""

from __future__ import annotations

import subprocess
import sys

import httpx
import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.servers import metric_value, serve_app, serve_component
from vigil.events import v2_request
from vigil.modelserver.app import create_app
from vigil.modelserver.loaders import ModelLoadError, load_model
from vigil.modelserver.settings import ModelServerSettings

X, Y = load_iris(return_X_y=True)


class CountingClassifier(LogisticRegression):
    """LogisticRegression that counts predict calls (to prove batches are one call)."""

    calls = 0

    def predict(self, X):
        type(self).calls += 1
        return super().predict(X)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    clf = CountingClassifier(max_iter=500).fit(X, Y)
    joblib.dump(clf, d / "iris.joblib")
    reg = LinearRegression().fit(X[:, 1:], X[:, 0])
    (d / "reg").mkdir()
    joblib.dump(reg, d / "reg" / "model.joblib")
    xclf = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, Y)
    xclf.save_model(d / "xgb-clf.json")
    xreg = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X[:, 1:], X[:, 0])
    xreg.save_model(d / "xgb-reg.json")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, (Y == 2).astype(int)), 5)
    booster.save_model(d / "xgb-booster.json")
    return {"dir": d, "clf": clf, "reg": reg, "xclf": xclf, "xreg": xreg, "booster": booster}


@pytest.fixture(scope="module")
def iris_server(models):
    settings = ModelServerSettings(uri=str(models["dir"] / "iris.joblib"), format="sklearn", name="iris",
                                   monitor="m1", namespace="ns1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIGIL_MAX_BODY_BYTES", "2000000")  # the one body limit, read when the app is built
        app = create_app(settings)
    with serve_app(app) as url:
        yield url


def infer_v2(url, name, rows, **extra):
    return httpx.post(f"{url}/v2/models/{name}/infer", json={**v2_request(rows), **extra}, timeout=30)


def outputs(response) -> dict:
    assert response.status_code == 200, response.text[:300]
    return {o["name"]: o for o in response.json()["outputs"]}


def test_sklearn_v2_and_v1(iris_server, models):
    rows = X[[0, 60, 120]]
    r = infer_v2(iris_server, "iris", rows, id="req-1")
    out = outputs(r)
    assert r.json()["model_name"] == "iris" and r.json()["id"] == "req-1"
    assert out["predict"]["datatype"] == "INT64" and out["predict"]["shape"] == [3]
    assert out["predict"]["data"] == models["clf"].predict(rows).tolist() == [0, 1, 2]
    proba = np.array(out["predict_proba"]["data"]).reshape(out["predict_proba"]["shape"])
    assert proba.shape == (3, 3) and out["predict_proba"]["datatype"] == "FP64"
    np.testing.assert_allclose(proba, models["clf"].predict_proba(rows), rtol=1e-9)

    r = httpx.post(f"{iris_server}/v1/models/iris:predict", json={"instances": rows.tolist()})
    assert r.status_code == 200 and r.json() == {"predictions": [0, 1, 2]}


def test_v2_one_tensor_per_feature_and_output_selection(iris_server, models):
    body = {"inputs": [{"name": f"f{i}", "shape": [2], "datatype": "FP32", "data": X[[0, 120], i].tolist()}
                       for i in range(4)],
            "outputs": [{"name": "predict"}]}
    r = httpx.post(f"{iris_server}/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text[:300]
    assert [o["name"] for o in r.json()["outputs"]] == ["predict"]
    assert r.json()["outputs"][0]["data"] == [0, 2]


def test_batch_is_one_vectorised_call(iris_server, models):
    rng = np.random.default_rng(0)
    rows = X[rng.integers(0, len(X), 5000)] + rng.normal(0, 0.05, (5000, 4))
    before = CountingClassifier.calls
    out = outputs(infer_v2(iris_server, "iris", rows))
    assert CountingClassifier.calls - before == 1
    assert out["predict"]["shape"] == [5000]
    assert out["predict"]["data"] == models["clf"].predict(rows).tolist()
    assert out["predict_proba"]["shape"] == [5000, 3]
    r = httpx.post(f"{iris_server}/v1/models/iris:predict", json={"instances": rows[:2000].tolist()}, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2000


def test_metadata_health_status(iris_server):
    assert httpx.get(f"{iris_server}/v2/health/live").status_code == 200
    assert httpx.get(f"{iris_server}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{iris_server}/v2/models/iris/ready").status_code == 200
    assert httpx.get(f"{iris_server}/healthz").status_code == 200
    assert httpx.get(f"{iris_server}/readyz").status_code == 200
    assert httpx.get(f"{iris_server}/v2").json()["name"] == "vigil-modelserver"
    meta = httpx.get(f"{iris_server}/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["platform"] == "sklearn/CountingClassifier"
    assert meta["inputs"][0]["shape"] == [-1, 4]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("predict", "INT64"), ("predict_proba", "FP64")]
    assert httpx.get(f"{iris_server}/v2/models/other").status_code == 404
    assert httpx.get(f"{iris_server}/v1/models/iris").json()["ready"] is True
    status = httpx.get(f"{iris_server}/status").json()
    assert status["component"] == "model" and status["ready"] is True
    assert status["model"]["task"] == "classification" and status["model"]["features"] == 4


BAD = [
    # (description, kwargs for httpx.post, status, reason)
    ("not json", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_json"),
    ("empty", {"content": b""}, 400, "empty_body"),
    ("wrong feature count", {"json": {"instances": [[1, 2, 3]]}}, 400, "feature_count"),
    ("non-numeric", {"json": {"instances": [[1, 2, "x", 4]]}}, 400, "non_numeric"),
    ("ragged rows", {"json": {"instances": [[1, 2, 3, 4], [1, 2]]}}, 400, "bad_shape"),
    ("no inputs", {"json": {"foo": 1}}, 400, "bad_body"),
    ("not an object", {"json": [1, 2, 3]}, 400, "bad_body"),
    ("bad shape", {"json": {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": [1, 2]}]}},
     400, "bad_shape"),
    ("string datatype", {"json": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES",
                                              "data": ["a", "b", "c", "d"]}]}}, 400, "non_numeric"),
    ("unknown output", {"json": {**v2_request(X[:1]), "outputs": [{"name": "nope"}]}}, 400, "unknown_output"),
    ("content type", {"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415, "content_type"),
    ("too large", {"json": {"instances": [[1.0, 2.0, 3.0, 4.0]] * 200_000}}, 413, "too_large"),
]


@pytest.mark.parametrize("what,kwargs,status,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_bodies_are_4xx_and_server_keeps_working(iris_server, what, kwargs, status, reason):
    before = metric_value(httpx.get(f"{iris_server}/metrics").text, "vigil_events_rejected_total", reason=reason) or 0
    r = httpx.post(f"{iris_server}/v2/models/iris/infer", timeout=30, **kwargs)
    assert r.status_code == status, r.text[:300]
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    after = metric_value(httpx.get(f"{iris_server}/metrics").text, "vigil_events_rejected_total", reason=reason)
    assert after == before + 1
    assert outputs(infer_v2(iris_server, "iris", X[:1]))["predict"]["data"] == [0]


def test_v1_needs_instances_and_unknown_model_is_404(iris_server):
    r = httpx.post(f"{iris_server}/v1/models/iris:predict", json=v2_request(X[:1]))
    assert r.status_code == 400 and "instances" in r.json()["error"]
    r = httpx.post(f"{iris_server}/v2/models/nope/infer", json=v2_request(X[:1]))
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = httpx.post(f"{iris_server}/v1/models/nope:predict", json={"instances": X[:1].tolist()})
    assert r.status_code == 404


def test_metrics(iris_server):
    infer_v2(iris_server, "iris", X[:7])
    text = httpx.get(f"{iris_server}/metrics").text
    assert metric_value(text, "vigil_model_request_duration_seconds_count", monitor="m1", namespace="ns1") >= 1
    assert metric_value(text, "vigil_model_requests_total", protocol="v2", code="200") >= 1
    assert metric_value(text, "vigil_model_instances_total") >= 7
    assert metric_value(text, "vigil_events_received_total", type="request") >= 1


@pytest.mark.parametrize("fmt,file,key,task", [
    ("xgboost", "xgb-clf.json", "xclf", "classification"),
    ("xgboost", "xgb-reg.json", "xreg", "regression"),
    ("sklearn", "reg", "reg", "regression"),
])
def test_xgboost_and_regressors(models, fmt, file, key, task):
    est = models[key]
    n = 4 if task == "classification" else 3
    rows = X[::7, :n] if task == "classification" else X[::7, 1:]
    settings = ModelServerSettings(uri=str(models["dir"] / file), format=fmt, name="m")
    with serve_app(create_app(settings)) as url:
        out = outputs(infer_v2(url, "m", rows))
        v1 = httpx.post(f"{url}/v1/models/m:predict", json={"instances": rows.tolist()}).json()["predictions"]
        meta = httpx.get(f"{url}/v2/models/m").json()
    if task == "classification":
        assert out["predict"]["datatype"] == "INT64"
        assert out["predict"]["data"] == est.predict(rows).tolist() == v1
        proba = np.array(out["predict_proba"]["data"]).reshape(out["predict_proba"]["shape"])
        np.testing.assert_allclose(proba, est.predict_proba(rows), rtol=1e-5)
        assert meta["platform"] == "xgboost/XGBClassifier"
    else:
        assert out["predict"]["datatype"] == "FP64" and "predict_proba" not in out
        np.testing.assert_allclose(out["predict"]["data"], est.predict(rows), rtol=1e-5)
        np.testing.assert_allclose(v1, est.predict(rows), rtol=1e-5)
        assert meta["parameters"]["task"] == "regression"


def test_xgboost_plain_booster_binary(models):
    settings = ModelServerSettings(uri=str(models["dir"] / "xgb-booster.json"), format="xgboost", name="b")
    with serve_app(create_app(settings)) as url:
        out = outputs(infer_v2(url, "b", X))
    p = models["booster"].predict(xgb.DMatrix(X))
    assert out["predict"]["data"] == (p > 0.5).astype(int).tolist()
    assert sum(out["predict"]["data"]) > 30  # the model really separates class 2
    proba = np.array(out["predict_proba"]["data"]).reshape(-1, 2)
    np.testing.assert_allclose(proba[:, 1], p, rtol=1e-5)


def test_load_errors(models, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing.joblib"), "sklearn")
    with pytest.raises(ModelLoadError, match="cannot load XGBoost"):
        bad = tmp_path / "model.json"
        bad.write_text("{}")
        load_model(str(bad), "xgboost")
    (tmp_path / "two").mkdir()
    for name in ("a.joblib", "b.joblib"):
        joblib.dump(models["reg"], tmp_path / "two" / name)
    with pytest.raises(ModelLoadError, match="several model files"):
        load_model(str(tmp_path / "two"), "sklearn")
    # a server whose model cannot load does not start (the process would exit with the reason)
    with pytest.raises(RuntimeError, match="failed to start"):
        with serve_app(create_app(ModelServerSettings(uri=str(tmp_path / "missing.joblib")))):
            pass


def test_subprocess_from_environment(models):
    """The server as its own process, configured only by VIGIL_MODEL_* (as `vigil up` and the operator do)."""
    env = {"VIGIL_MODEL_URI": f"file://{models['dir'] / 'xgb-clf.json'}", "VIGIL_MODEL_FORMAT": "xgboost",
           "VIGIL_MODEL_NAME": "iris", "VIGIL_MODEL_MONITOR": "iris", "VIGIL_MODEL_NAMESPACE": "prod"}
    with serve_component("model", env) as url:
        out = outputs(infer_v2(url, "iris", X[[0, 120]]))
        assert out["predict"]["data"] == [0, 2]
        text = httpx.get(f"{url}/metrics").text
        assert metric_value(text, "vigil_model_requests_total", monitor="iris", namespace="prod", code="200") == 1


def test_no_tensorflow_import_for_sklearn_and_logger():
    code = ("import sys, vigil.modelserver.app, vigil.logger.app, vigil.modelserver.loaders as l; "
            "l.load_sklearn; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.tensorflow
def test_keras_model_file_and_savedmodel(tmp_path):
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=30, verbose=0)
    model.save(tmp_path / "model.keras")
    model.export(str(tmp_path / "saved"), verbose=False)
    expected = model.predict(X, verbose=0)
    for uri, platform in ((tmp_path / "model.keras", "tensorflow/keras/Sequential"),
                          (tmp_path / "saved", "tensorflow/SavedModel")):
        with serve_app(create_app(ModelServerSettings(uri=str(uri), format="tensorflow", name="k"))) as url:
            out = outputs(infer_v2(url, "k", X))
            v1 = httpx.post(f"{url}/v1/models/k:predict", json={"instances": X[:5].tolist()}).json()
            meta = httpx.get(f"{url}/v2/models/k").json()
            bad = httpx.post(f"{url}/v1/models/k:predict", json={"instances": [[1, 2]]})
        assert meta["platform"] == platform and meta["inputs"][0]["shape"] == [-1, 4]
        proba = np.array(out["predict_proba"]["data"]).reshape(-1, 3)
        np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
        assert out["predict"]["data"] == expected.argmax(1).tolist()
        assert v1["predictions"] == expected[:5].argmax(1).tolist()
        assert (expected.argmax(1) == Y).mean() > 0.8
        assert bad.status_code == 400 and "features" in bad.json()["error"]


@pytest.mark.prometheus
def test_metrics_pass_promtool(iris_server):
    from tests.prom import need

    infer_v2(iris_server, "iris", X[:2])
    httpx.post(f"{iris_server}/v1/models/iris:predict", json={"instances": [[1, 2]]})
    text = httpx.get(f"{iris_server}/metrics").text
    r = subprocess.run([need("promtool"), "check", "metrics"], input=text, text=True, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
