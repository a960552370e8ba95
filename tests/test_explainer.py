"""The anchor explainer service over real HTTP on loopback.

A real model server (`vigil.modelserver`, uvicorn on 127.0.0.1) serves an iris classifier
over V2; `train_explainer` fits alibi's `AnchorTabular` against the model file and saves it
with alibi's `save_explainer`; the explainer service (a fresh app, and once a fresh
process) loads that artifact and explains instances by calling the model server as a black
box. Each anchor is checked predicate by predicate on the explained instance, and against
the model's own predictions on the reference rows it covers.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time

import httpx
import joblib
import numpy as np
import pytest
import uvicorn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from tests.conftest import cloud_event, serve_ready, wait_ready
from tests.servers import free_port, metric_value, serve_app, serve_component, wait_until
from vigil.events import REQUEST, v2_request
from vigil.modelserver.app import create_app as create_model_app
from vigil.modelserver.settings import ModelServerSettings
from vigil_detectors.explainer.service import create_app
from vigil_detectors.explainer.settings import ExplainerSettings
from vigil_detectors.explainer.train import train_explainer

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
_NUM = r"(-?\d+(?:\.\d+)?)"


def holds(predicate: str, x, names, categories=None) -> bool:
    """Evaluate one anchor predicate as alibi prints it on instance `x`."""
    categories = categories or {}
    if m := re.fullmatch(rf"{_NUM} < (\w+) <= {_NUM}", predicate):
        lo, name, hi = float(m[1]), m[2], float(m[3])
        return lo < x[names.index(name)] <= hi
    if m := re.fullmatch(rf"(\w+) <= {_NUM}", predicate):
        return x[names.index(m[1])] <= float(m[2])
    if m := re.fullmatch(rf"(\w+) > {_NUM}", predicate):
        return x[names.index(m[1])] > float(m[2])
    if m := re.fullmatch(r"(\w+) = (.+)", predicate):
        idx = names.index(m[1])
        return categories[idx][int(x[idx])] == m[2]
    raise AssertionError(f"unexpected anchor predicate {predicate!r}")


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.fixture(scope="module")
def model_file(iris, tmp_path_factory):
    x, y = iris
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y), path)
    return path


@pytest.fixture(scope="module")
def model_url(model_file):
    app = create_model_app(ModelServerSettings(uri=str(model_file), format="sklearn", name="iris"))
    with serve_app(app) as url:
        yield wait_ready(url, "/v2/health/ready")


@pytest.fixture(scope="module")
def artifact(iris, model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("explainer")
    returned = train_explainer(iris[0], {"threshold": 0.95, "sampleRate": 1.0, "seed": 0}, str(model_file), out,
                               NAMES, {}, model_format="sklearn")
    assert returned == out and (out / "meta.dill").is_file() and (out / "explainer.dill").is_file()
    return out


def explainer_settings(artifact, model_url, **kw) -> ExplainerSettings:
    base = dict(artifact=str(artifact), model_url=model_url, model_name="iris", feature_names=NAMES, monitor="t",
                namespace="ns", seed=0, threshold=0.95)
    return ExplainerSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def explainer(artifact, model_url):
    app = create_app(explainer_settings(artifact, model_url, sample_rate=1.0, max_concurrent=2))
    with serve_ready(app, client_timeout=60) as client:
        yield client


def predict(model_url, row) -> int:
    r = httpx.post(f"{model_url}/v2/models/iris/infer", json=v2_request(np.asarray(row)))
    return r.json()["outputs"][0]["data"][0]


def test_anchor_holds_on_the_instance(explainer, model_url, iris, model_file):
    x, _ = iris
    model = joblib.load(model_file)
    labels = model.predict(x)
    for n, i in enumerate((0, 120, 60)):
        row = x[i]
        body = v2_request(row) if n % 2 == 0 else {"instances": [row.tolist()]}
        resp = explainer.post("/explain", json=body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["prediction"] == predict(model_url, row)
        assert out["anchor"], out
        for predicate in out["anchor"]:
            assert holds(predicate, row, NAMES), (predicate, row.tolist())
        assert set(out["features"]) <= set(NAMES) and len(out["features"]) == len(out["anchor"])
        assert 0 < out["coverage"] <= 1 and out["modelCalls"] > 0 and out["modelRows"] >= 100
        assert out["instance"] == pytest.approx(row.tolist())
        if i in (0, 120):  # clear-cut setosa / virginica: the threshold is met
            assert out["thresholdMet"] and out["precision"] >= 0.95
        else:
            assert out["precision"] >= 0.7
        # the anchor as a rule on the reference data: where it applies, the model mostly agrees
        covered = np.array([all(holds(p, r, NAMES) for p in out["anchor"]) for r in x])
        assert covered[i] and np.mean(labels[covered] == out["prediction"]) >= 0.85
    metrics = explainer.get("/metrics").text
    assert metric_value(metrics, "vigil_explainer_explanations_total", source="api") >= 3
    assert metric_value(metrics, "vigil_explainer_duration_seconds_count") >= 3
    assert metric_value(metrics, "vigil_explainer_model_calls_total") > 0
    assert 0 < metric_value(metrics, "vigil_explainer_precision") <= 1
    status = explainer.get("/status").json()["explainer"]
    assert status["explanations"] >= 3 and status["lastAnchor"] and status["coverage"] is not None


def test_bad_input_is_rejected_and_service_keeps_working(explainer, iris):
    x, _ = iris
    bad = [
        ({"instances": x[:2].tolist()}, 400, "instance_count"),
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}, 400, "feature_count"),
        ({"instances": [[1, 2, "three", 4]]}, 400, "non_numeric"),
        ({"instances": [[1, 2, float("nan"), 4]]}, 400, "missing_value"),  # anchors need every value
        ({"rows": [[1, 2, 3, 4]]}, 400, "bad_body"),
        ({"inputs": []}, 400, "bad_body"),
    ]
    for body, code, reason in bad:
        resp = explainer.post("/explain", content=json.dumps(body), headers={"content-type": "application/json"})
        assert resp.status_code == code, (body, resp.text)
        assert resp.json()["reason"] == reason and resp.json()["error"]
    assert explainer.post("/explain", content=b"{not json", headers={"content-type": "application/json"}) \
        .status_code == 400
    assert explainer.post("/explain", content=b"1,2,3,4", headers={"content-type": "text/csv"}).status_code == 415
    resp = explainer.post("/explain", json=v2_request(x[100]))
    assert resp.status_code == 200 and resp.json()["anchor"]
    metrics = explainer.get("/metrics").text
    assert metric_value(metrics, "vigil_events_rejected_total", reason="instance_count") == 1
    assert metric_value(metrics, "vigil_events_rejected_total", reason="non_numeric") == 1
    assert metric_value(metrics, "vigil_events_rejected_total", reason="missing_value") == 1


def test_concurrent_callers_each_get_their_own_explanation(explainer, model_url, iris):
    x, _ = iris
    rows = [x[i] for i in (10, 55, 110, 140)]
    answers: dict[int, httpx.Response] = {}

    def call(k):
        answers[k] = explainer.post("/explain", json={"instances": [rows[k].tolist()]})

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k, row in enumerate(rows):
        out = answers[k].json()
        assert answers[k].status_code == 200, out
        assert out["instance"] == pytest.approx(row.tolist())
        assert out["prediction"] == predict(model_url, row)
        assert all(holds(p, row, NAMES) for p in out["anchor"])


def test_sampled_request_events_are_explained(explainer, iris):
    x, _ = iris
    before = metric_value(explainer.get("/metrics").text, "vigil_explainer_explanations_total", source="sampled")
    msg = cloud_event(v2_request(x[130]), REQUEST, inferenceid="s-1")
    assert explainer.post("/", headers=msg.headers, content=msg.body).status_code == 202
    wait_until(lambda: metric_value(explainer.get("/metrics").text, "vigil_explainer_explanations_total",
                                    source="sampled") > before, timeout=30, what="a sampled explanation")
    status = explainer.get("/status").json()["explainer"]
    assert all(holds(p, x[130], NAMES) for p in status["lastAnchor"])
    # a request event with the wrong feature count is rejected by the frame, nothing explained
    bad = cloud_event({"instances": [[1, 2]]}, REQUEST, inferenceid="s-1", id="2")
    assert explainer.post("/", headers=bad.headers, content=bad.body).status_code == 400


def test_categorical_features_from_the_schema(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    x = np.column_stack([rng.normal(0, 1, n), rng.integers(0, 3, n), rng.normal(0, 1, n)])
    y = np.where(x[:, 1] == 0, 0, np.where(x[:, 0] > 0, 1, 2))  # colour red decides class 0
    names = ["size", "color", "noise"]
    colors = ["red", "green", "blue"]
    model_path = tmp_path / "model.joblib"
    joblib.dump(DecisionTreeClassifier(random_state=0).fit(x, y), model_path)
    out = train_explainer(x, {"seed": 1}, str(model_path), tmp_path / "explainer", names, {"color": colors})
    app = create_model_app(ModelServerSettings(uri=str(model_path), format="sklearn", name="toy"))
    with serve_app(app) as model_url:
        wait_ready(model_url, "/v2/health/ready")
        settings = ExplainerSettings(artifact=str(out), model_url=model_url, model_name="toy", feature_names=names,
                                     categorical={"1": 3}, seed=0, max_concurrent=1)
        with serve_app(create_app(settings)) as url:
            wait_ready(url)
            row = np.array([0.5, 0.0, -0.2])
            resp = httpx.post(url + "/explain", json={"instances": [row.tolist()]}, timeout=60)
            assert resp.status_code == 200, resp.text
            exp = resp.json()
            assert exp["prediction"] == 0 and "color = red" in exp["anchor"], exp
            assert all(holds(p, row, names, {1: colors}) for p in exp["anchor"])
            resp = httpx.post(url + "/explain", json={"instances": [[0.5, 5, 0.1]]})
            assert resp.status_code == 400 and resp.json()["reason"] == "bad_category"


@contextlib.contextmanager
def model_server_on(port: int, model_file):
    """The iris model server on a given loopback port (to stop and bring it back at the same URL)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app = create_model_app(ModelServerSettings(uri=str(model_file), format="sklearn", name="iris"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield wait_ready(f"http://127.0.0.1:{port}", "/v2/health/ready")
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_waits_for_the_model_server_and_survives_it_going_away(artifact, model_file, iris):
    x, _ = iris
    port = free_port()
    model_url = f"http://127.0.0.1:{port}"
    body = {"instances": [x[0].tolist()]}
    with serve_app(create_app(explainer_settings(artifact, model_url, max_concurrent=1))) as url:
        # no model server yet: alive, not ready, /explain says so
        time.sleep(0.5)
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.post(url + "/explain", json=body).status_code == 503
        with model_server_on(port, model_file):
            wait_ready(url)  # becomes ready by itself once the model server answers
            assert httpx.post(url + "/explain", json=body, timeout=60).status_code == 200
        # the model server goes away: 502 naming the cause, the service stays up
        resp = httpx.post(url + "/explain", json=body, timeout=60)
        assert resp.status_code == 502 and resp.json()["reason"] == "model_error"
        assert "unreachable" in resp.json()["error"]
        assert httpx.get(url + "/healthz").status_code == 200
        assert metric_value(httpx.get(url + "/metrics").text, "vigil_explainer_failures_total",
                            reason="model_error") == 1
        with model_server_on(port, model_file):  # back on the same URL: explanations work again
            assert httpx.post(url + "/explain", json=body, timeout=60).status_code == 200
    # an explainer still waiting for its model server shuts down promptly
    started = time.monotonic()
    with serve_app(create_app(explainer_settings(artifact, f"http://127.0.0.1:{free_port()}"))) as url:
        assert httpx.get(url + "/readyz").status_code == 503
    assert time.monotonic() - started < 10


def test_artifact_loads_in_a_fresh_process(artifact, model_url, iris):
    x, _ = iris
    env = {"VIGIL_EXPLAINER_ARTIFACT": str(artifact), "VIGIL_EXPLAINER_MODEL_URL": model_url,
           "VIGIL_EXPLAINER_MODEL_NAME": "iris", "VIGIL_EXPLAINER_FEATURE_NAMES": json.dumps(NAMES),
           "VIGIL_EXPLAINER_CATEGORICAL": "{}", "VIGIL_EXPLAINER_THRESHOLD": "0.95",
           "VIGIL_EXPLAINER_SAMPLE_RATE": "0.0", "VIGIL_EXPLAINER_MONITOR": "iris"}
    with serve_component("explainer", env, timeout=120) as url:
        resp = httpx.post(url + "/explain", json=v2_request(x[120]), timeout=60)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["prediction"] == 2 and out["precision"] >= 0.95
        assert all(holds(p, x[120], NAMES) for p in out["anchor"])
        assert httpx.get(url + "/status").json()["explainer"]["explanations"] == 1


def test_model_calls_encode_as_json_writes_v2_request_bit_for_bit():
    """The predictor writes its V2 bodies with orjson; they read back exactly as `json` writing
    `v2_request` would have them (numbers bit for bit), NaN rows included (through `json`)."""
    from vigil_detectors.explainer.predictor import encode_request

    rng = np.random.default_rng(3)
    for rows in (rng.random((7, 4)), rng.normal(0, 1e-300, (3, 2, 2, 3)), np.array([1e308, -0.0, 5e-324, 1 / 3]),
                 np.array([[np.nan, 1.0], [np.inf, 2.0]]), rng.random((100, 32, 32, 3)).astype(np.float32)):
        want = v2_request(rows)
        want["outputs"] = [{"name": "predict"}]
        got = json.loads(encode_request(rows))
        assert got["inputs"][0]["shape"] == want["inputs"][0]["shape"] and got["outputs"] == want["outputs"]
        assert got["inputs"][0]["datatype"] == "FP64"
        assert np.array_equal(np.asarray(got["inputs"][0]["data"], dtype=np.float64).view(np.int64),
                              np.asarray(want["inputs"][0]["data"], dtype=np.float64).view(np.int64))
