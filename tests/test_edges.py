"""Every HTTP edge under bad input and faults (DESIGN §11), with real services on loopback.

- the hand list of bad inputs (`bench/probe_edges.py`, the same one the probe sends to a
  live stack) against the model server, the logger (inference and feedback), two
  detectors (drift, metrics) and the explainer's ``POST /explain``: every one a 4xx,
  counted by the service that refused it;
- a hypothesis fuzz pass over the same edges: random JSON, random bytes, random header
  sets — no 5xx, every 4xx counted;
- a poison request (a 400-digit integer) then a valid one on a new client connection,
  100 times: zero 502 (the poison is a 400 at the model server, which keeps the
  connection); and an upstream that drops pooled connections without answering: the
  logger retries once on a fresh connection, so the client never sees it;
- feedback truth that fits the classes passes, what does not is a counted 400.
"""

from __future__ import annotations

import json
import os
import uuid

import httpx
import joblib
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bench.probe_edges import Bad, detector_inputs, explain_inputs, feedback_inputs, inference_inputs, send
from tests.servers import metric_value, serve_component

CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """model, metrics, drift and a logger in front of the model sending to metrics: real processes."""
    d = tmp_path_factory.mktemp("edges")
    X, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), d / "iris.joblib")
    pd.DataFrame(X, columns=FEATURES).to_csv(d / "reference.csv", index=False)
    from vigil_detectors.explainer.train import train_explainer

    train_explainer(X, {"seed": 0}, str(d / "iris.joblib"), d / "explainer", FEATURES, {}, model_format="sklearn",
                    progress=lambda m: None)
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    with serve_component("model", {**env, "VIGIL_MODEL_URI": str(d / "iris.joblib"), "VIGIL_MODEL_NAME": "iris"},
                         ready_path="/v2/health/ready") as model, \
            serve_component("metrics", {**env, "VIGIL_METRICS_CLASSES": json.dumps(CLASSES)}) as metrics, \
            serve_component("drift", {**env, "VIGIL_DRIFT_REFERENCE": str(d / "reference.csv"),
                                      "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES),
                                      "VIGIL_DRIFT_WINDOW_SIZE": "50"}, timeout=120) as drift, \
            serve_component("logger", {**env, "VIGIL_LOGGER_UPSTREAM": model, "VIGIL_LOGGER_TASK": "classification",
                                       "VIGIL_LOGGER_CLASSES": json.dumps(CLASSES),
                                       "VIGIL_LOGGER_SINKS": json.dumps([{"name": "metrics", "url": metrics,
                                                                          "types": ["response", "feedback"]}])}) \
            as logger, \
            serve_component("explainer", {**env, "VIGIL_EXPLAINER_ARTIFACT": str(d / "explainer"),
                                          "VIGIL_EXPLAINER_MODEL_URL": model, "VIGIL_EXPLAINER_MODEL_NAME": "iris",
                                          "VIGIL_EXPLAINER_FEATURE_NAMES": json.dumps(FEATURES)}, timeout=180) \
            as explainer:
        yield {"model": model, "logger": logger, "metrics": metrics, "drift": drift, "explainer": explainer}


def rejected(*bases: str) -> int:
    return sum(httpx.get(b + "/status", timeout=10).json()["events"]["rejected"] for b in bases)


def check(client: httpx.Client, base: str, counters: tuple[str, ...], bad: Bad) -> int:
    """Send `bad`; it must get a 4xx counted once by one of `counters`, or a 2xx."""
    before = rejected(*counters)
    status = send(client, base, bad)
    assert status is not None, f"{bad.name}: connection failed"
    assert status < 500, f"{bad.name}: {status}"
    if status >= 400:
        assert rejected(*counters) == before + 1, f"{bad.name}: a {status} not counted"
    return status


def targets(stack) -> dict[str, tuple[str, tuple[str, ...], list[Bad]]]:
    s = stack
    return {
        "model": (s["model"], (s["model"],), inference_inputs("iris")),
        "logger": (s["logger"], (s["logger"], s["model"]), inference_inputs("iris")),
        "feedback": (s["logger"], (s["logger"],), feedback_inputs()),
        "drift": (s["drift"], (s["drift"],), detector_inputs()),
        "metrics": (s["metrics"], (s["metrics"],), detector_inputs(kind="response")),
        "explain": (s["explainer"], (s["explainer"],), explain_inputs()),
    }


@pytest.mark.parametrize("edge", ["model", "logger", "feedback", "drift", "metrics", "explain"])
def test_hand_list_is_all_counted_4xx(stack, edge):
    base, counters, cases = targets(stack)[edge]
    with httpx.Client(timeout=60) as client:
        statuses = {bad.name: check(client, base, counters, bad) for bad in cases}
    not_4xx = {k: v for k, v in statuses.items() if not 400 <= v < 500}
    # a detector acknowledges (204) the event kinds it does not consume, whatever their body: it never reads them
    if edge in ("drift", "metrics"):
        not_4xx = {k: v for k, v in not_4xx.items() if v != 204}
    assert not not_4xx, not_4xx
    expected = {"gzip content-encoding": 415, "oversized headers": 431, "conflicting content-type": 400,
                "body over the limit": 413, "text/csv content type": 415}
    for name, status in expected.items():
        got = [v for k, v in statuses.items() if k.endswith(name)]
        assert got and all(v == status for v in got), (name, got)
    # the service still answers good input
    r = httpx.post(base + "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}) \
        if edge in ("model", "logger") else None
    assert r is None or r.status_code == 200
    if edge == "explain":  # and the explainer still explains
        r = httpx.post(base + "/explain", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=120)
        assert r.status_code == 200 and r.json()["anchor"] is not None, r.text


# -- fuzz --------------------------------------------------------------------------------------------

_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**500, max_value=10**500),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_json = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=30)
_rows = st.lists(st.lists(_leaf, min_size=0, max_size=6), max_size=4)


def _encode(doc) -> bytes:
    return json.dumps(doc, allow_nan=True, default=str).encode()


@st.composite
def _bodies(draw, kind: str) -> bytes:
    choice = draw(st.sampled_from(["json", "rows", "bytes"]))
    if choice == "bytes":
        return draw(st.binary(max_size=64))
    if choice == "json":
        return _encode(draw(_json))
    rows = draw(_rows)
    if kind == "feedback":
        return _encode({"inferenceId": draw(st.text(min_size=0, max_size=10)), "truth": draw(_json),
                        **({"response": draw(_json)} if draw(st.booleans()) else {})})
    if draw(st.booleans()):
        return _encode({"instances": rows})
    return _encode({"inputs": [{"name": "x", "datatype": draw(st.sampled_from(["FP64", "INT64", "BYTES", "X"])),
                                "shape": draw(st.lists(st.integers(-2, 10**20), max_size=3)), "data": rows}]})


_HEADERS = st.fixed_dictionaries({}, optional={
    "content-type": st.sampled_from(["application/json", "text/plain", "application/cloudevents+json", ""]),
    "content-encoding": st.sampled_from(["identity", "gzip", "deflate"]),
    "ce-id": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=5),
    "ce-type": st.sampled_from(["dev.vigil.inference.request", "dev.vigil.inference.response",
                                "dev.vigil.inference.feedback", "x"]),
    "ce-source": st.just("/fuzz"), "ce-specversion": st.sampled_from(["1.0", "0.3", ""]),
    "x-request-id": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=5),
})


@pytest.mark.parametrize("edge", ["model", "logger", "feedback", "drift", "metrics", "explain"])
def test_fuzz_no_5xx_every_4xx_counted(stack, edge):
    base, counters, cases = targets(stack)[edge]
    paths = sorted({c.path for c in cases})
    client = httpx.Client(timeout=60)

    @settings(max_examples=int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=_bodies("feedback" if edge == "feedback" else "inference"), headers=_HEADERS,
           path=st.sampled_from(paths))
    def one(body, headers, path):
        check(client, base, counters, Bad("fuzz", path, body, headers))

    try:
        one()
    finally:
        client.close()


# -- the inference path ------------------------------------------------------------------------------

POISON = b'{"instances": [[' + b"9" * 400 + b', 3.5, 1.4, 0.2]]}'


def test_poison_then_valid_never_502(stack):
    counts: dict[int, int] = {}
    for _ in range(100):
        with httpx.Client(timeout=30) as a:  # each client its own connection to the logger
            poison = a.post(stack["logger"] + "/v1/models/iris:predict", content=POISON,
                            headers={"content-type": "application/json"})
        with httpx.Client(timeout=30) as b:
            valid = b.post(stack["logger"] + "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        counts[poison.status_code] = counts.get(poison.status_code, 0) + 1
        counts[valid.status_code] = counts.get(valid.status_code, 0) + 1
        assert poison.status_code == 400 and poison.json()["reason"] == "out_of_range"
    assert counts.get(502, 0) == 0 and counts[200] == 100, counts


def test_feedback_truth_must_fit_the_classes(stack):
    url = stack["logger"] + "/feedback"
    ok = [{"truth": "virginica"}, {"truth": 2}, {"truth": 0.0}, {"truth": ["setosa", 1]},
          {"truth": [[0.1, 0.2, 0.7]]}, {"truth": 1, "response": [1]}]
    bad = [{"truth": "rose"}, {"truth": 3}, {"truth": 1.5}, {"truth": {"class": 1}}, {"truth": [[1, 2]]},
           {"truth": True}, {"truth": [[[1]]]}, {"truth": []}]
    for doc in ok:
        r = httpx.post(url, json={"inferenceId": str(uuid.uuid4()), **doc})
        assert r.status_code == 202, (doc, r.text)
    before = metric_value(httpx.get(stack["logger"] + "/metrics").text, "vigil_events_rejected_total",
                          reason="bad_truth") or 0
    for doc in bad:
        r = httpx.post(url, json={"inferenceId": "x", **doc})
        assert r.status_code == 400 and r.json()["reason"] == "bad_truth", (doc, r.text)
    r = httpx.post(url, content=b'{"inferenceId": "x", "truth": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == "bad_truth"
    after = metric_value(httpx.get(stack["logger"] + "/metrics").text, "vigil_events_rejected_total", reason="bad_truth")
    assert after == before + len(bad) + 1
