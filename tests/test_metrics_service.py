"""The feedback metrics service over real HTTP on loopback, fed real binary-mode CloudEvents.

Every metric value is checked against scikit-learn's own `sklearn.metrics` functions on the
same (truth, prediction) pairs: binary, multiclass from labels (names and indices),
probability rows, regression; cumulative and over the recent window. Also: feedback before
and after its response, expiry and eviction counted, Seldon-style self-contained feedback,
retried (duplicate) events, bad input → 4xx while the service keeps working.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)

from tests.conftest import cloud_event, serve_ready
from vigil.events import FEEDBACK, RESPONSE
from vigil_detectors.metrics.service import create_app
from vigil_detectors.metrics.settings import MetricsSettings


@contextlib.contextmanager
def metrics_service(**settings):
    with serve_ready(create_app(MetricsSettings(monitor="t", namespace="ns", **settings)), timeout=10,
                     client_timeout=10) as client:
        yield client


def send(client, ce_type, inference_id, data, **extra) -> httpx.Response:
    msg = cloud_event(data, ce_type, inferenceid=inference_id, **extra)
    return client.post("/", headers=msg.headers, content=msg.body)


def ok(resp: httpx.Response) -> httpx.Response:
    assert resp.status_code in (200, 202, 204), resp.text
    return resp


def v2_labels(labels, datatype="INT64") -> dict:
    labels = list(labels)
    return {"model_name": "m", "outputs": [{"name": "predict", "shape": [len(labels)], "datatype": datatype,
                                            "data": labels}]}


def scrape(client) -> dict:
    """{(name, frozenset(labels minus monitor/namespace)): value} from /metrics."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name.startswith(("process_", "python_")):  # prometheus-client's standard collectors
            continue
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k not in ("monitor", "namespace")}
            assert s.labels.get("monitor") == "t" and s.labels.get("namespace") == "ns"
            out[(s.name, frozenset(labels.items()))] = s.value
    return out


def metric(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def check_classification(samples, y_true, y_pred, names, window):
    """Every classification series against scikit-learn, cumulative and recent."""
    k = len(names)
    labels = list(range(k))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    n = len(y_true)
    for c, name in enumerate(names):
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        assert metric(samples, "vigil_metrics_true_positives_total", **{"class": name}) == tp
        assert metric(samples, "vigil_metrics_false_positives_total", **{"class": name}) == fp
        assert metric(samples, "vigil_metrics_false_negatives_total", **{"class": name}) == fn
        assert metric(samples, "vigil_metrics_true_negatives_total", **{"class": name}) == n - tp - fp - fn
    for window_name, (t, p) in (("cumulative", (y_true, y_pred)), ("recent", (y_true[-window:], y_pred[-window:]))):
        assert metric(samples, "vigil_metrics_accuracy", window=window_name) == pytest.approx(accuracy_score(t, p))
        prec, rec, f1, _ = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
        for c, name in enumerate(names):
            assert metric(samples, "vigil_metrics_precision", **{"class": name, "window": window_name}) == \
                pytest.approx(prec[c])
            assert metric(samples, "vigil_metrics_recall", **{"class": name, "window": window_name}) == \
                pytest.approx(rec[c])
            assert metric(samples, "vigil_metrics_f1", **{"class": name, "window": window_name}) == \
                pytest.approx(f1[c])


def test_binary_labels_feedback_before_and_after_response():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 120)
    y_pred = np.where(rng.random(120) < 0.8, y_true, 1 - y_true)
    with metrics_service(task="classification", classes=None, window=40) as client:
        joined_t, joined_p = [], []
        for i in range(120):
            iid = f"b-{i}"
            if i % 3 == 0:  # feedback first, response completes the join
                ok(send(client, FEEDBACK, iid, {"truth": int(y_true[i])}))
                ok(send(client, RESPONSE, iid, {"predictions": [int(y_pred[i])]}))
            else:  # response first (V2), feedback completes the join
                ok(send(client, RESPONSE, iid, v2_labels([int(y_pred[i])])))
                ok(send(client, FEEDBACK, iid, {"truth": [int(y_true[i])]}))
            joined_t.append(y_true[i])
            joined_p.append(y_pred[i])
        samples = scrape(client)
        check_classification(samples, np.array(joined_t), np.array(joined_p), ["0", "1"], window=40)
        assert metric(samples, "vigil_metrics_feedback_total") == 120
        assert metric(samples, "vigil_metrics_matched_total") == 120
        assert metric(samples, "vigil_metrics_window_instances") == 40
        status = client.get("/status").json()["metrics"]
        assert status["accuracy"] == pytest.approx(accuracy_score(joined_t[-40:], joined_p[-40:]))
        assert status["accuracyWindow"] == "recent"
        assert status["accuracyCumulative"] == pytest.approx(accuracy_score(joined_t, joined_p))
        assert status["feedback"] == 120 and status["matched"] == 120 and status["pending"] == 0


def test_multiclass_names_indices_and_batches():
    names = ["setosa", "versicolor", "virginica"]
    rng = np.random.default_rng(2)
    with metrics_service(task="classification", classes=names, window=25) as client:
        all_t, all_p = [], []
        for b in range(15):
            n = int(rng.integers(1, 6))  # batched responses: n rows joined with n truth values
            t = rng.integers(0, 3, n)
            p = np.where(rng.random(n) < 0.6, t, rng.integers(0, 3, n))
            iid = f"m-{b}"
            truth = [names[i] for i in t] if b % 2 else t.tolist()  # labels as names or as indices
            if b % 4 == 0:
                ok(send(client, FEEDBACK, iid, {"truth": truth}))
                ok(send(client, RESPONSE, iid, v2_labels(p.tolist())))
            else:
                ok(send(client, RESPONSE, iid, v2_labels([names[i] for i in p], "BYTES")
                        if b % 3 == 0 else v2_labels(p.tolist())))
                ok(send(client, FEEDBACK, iid, {"truth": truth}))
            all_t += t.tolist()
            all_p += p.tolist()
        check_classification(scrape(client), np.array(all_t), np.array(all_p), names, window=25)
        status = client.get("/status").json()["metrics"]
        _, rec, _, _ = precision_recall_fscore_support(all_t[-25:], all_p[-25:], labels=[0, 1, 2], zero_division=0)
        assert status["classes"]["virginica"]["recall"] == pytest.approx(rec[2])
        assert status["instances"] == len(all_t)


def test_probability_and_one_hot_outputs():
    names = ["a", "b", "c"]
    rng = np.random.default_rng(3)
    n = 60
    proba = rng.dirichlet([1, 1, 1], n)
    y_true = rng.integers(0, 3, n)
    with metrics_service(task="classification", classes=names, window=1000) as client:
        for i in range(n):
            iid = f"p-{i}"
            body = {"outputs": [{"name": "predict_proba", "shape": [1, 3], "datatype": "FP32",
                                 "data": proba[i].tolist()}]}
            ok(send(client, RESPONSE, iid, body))
            one_hot = np.eye(3)[y_true[i]].tolist()  # truth as a one-hot row
            ok(send(client, FEEDBACK, iid, {"truth": [one_hot]}))
        check_classification(scrape(client), y_true, proba.argmax(axis=1), names, window=1000)


def test_regression_cumulative_and_recent():
    rng = np.random.default_rng(4)
    y = rng.normal(10, 3, 90)
    yhat = y + rng.normal(0, 1, 90)
    with metrics_service(task="regression", window=30) as client:
        for i in range(0, 90, 3):  # batches of three rows, alternating arrival order
            iid = f"r-{i}"
            if i % 2:
                ok(send(client, FEEDBACK, iid, {"truth": y[i:i + 3].tolist()}))
                ok(send(client, RESPONSE, iid, {"predictions": [[v] for v in yhat[i:i + 3]]}))
            else:
                ok(send(client, RESPONSE, iid, {"outputs": [{"name": "predict", "shape": [3], "datatype": "FP64",
                                                             "data": yhat[i:i + 3].tolist()}]}))
                ok(send(client, FEEDBACK, iid, {"truth": y[i:i + 3].tolist()}))
        samples = scrape(client)
        for window, (t, p) in (("cumulative", (y, yhat)), ("recent", (y[-30:], yhat[-30:]))):
            mse = mean_squared_error(t, p)
            assert metric(samples, "vigil_metrics_mae", window=window) == pytest.approx(mean_absolute_error(t, p))
            assert metric(samples, "vigil_metrics_mse", window=window) == pytest.approx(mse)
            assert metric(samples, "vigil_metrics_rmse", window=window) == pytest.approx(np.sqrt(mse))
            assert metric(samples, "vigil_metrics_r2", window=window) == pytest.approx(r2_score(t, p))
        status = client.get("/status").json()["metrics"]
        assert status["r2"] == pytest.approx(r2_score(y[-30:], yhat[-30:]))
        assert status["cumulative"]["mae"] == pytest.approx(mean_absolute_error(y, yhat))
        assert ("vigil_metrics_accuracy", frozenset({("window", "recent")})) not in samples


def test_unmatched_entries_expire_and_are_counted():
    with metrics_service(task="classification", classes=["no", "yes"], feedback_ttl_seconds=0.4, max_pending=3) as c:
        ok(send(c, RESPONSE, "lonely-response", {"predictions": [1]}))
        ok(send(c, FEEDBACK, "lonely-feedback", {"truth": ["yes"]}))
        ok(send(c, FEEDBACK, "late", {"truth": ["no"]}))
        assert c.get("/status").json()["metrics"]["pending"] == 3
        time.sleep(1.0)  # no traffic: the background sweep expires them
        samples = scrape(c)
        assert metric(samples, "vigil_metrics_expired_total", kind="response") == 1
        assert metric(samples, "vigil_metrics_expired_total", kind="feedback") == 2
        assert metric(samples, "vigil_metrics_pending", kind="feedback") == 0
        ok(send(c, RESPONSE, "late", {"predictions": [0]}))  # its feedback expired: nothing to join
        status = c.get("/status").json()["metrics"]
        assert status["matched"] == 0 and status["pendingResponses"] == 1 and status["expired"] == 3
        # capacity: a fourth pending response evicts the oldest one, counted as expired and evicted
        for i in range(4):
            ok(send(c, RESPONSE, f"cap-{i}", {"predictions": [0]}))
        samples = scrape(c)
        assert metric(samples, "vigil_metrics_evicted_total", kind="response") == 2
        assert metric(samples, "vigil_metrics_expired_total", kind="response") == 3
        ok(send(c, FEEDBACK, "cap-0", {"truth": [0]}))  # evicted: waits as feedback
        ok(send(c, FEEDBACK, "cap-3", {"truth": [0]}))  # still there: joins
        status = c.get("/status").json()["metrics"]
        assert status["matched"] == 1 and status["accuracy"] == 1.0


def test_seldon_feedback_with_response_and_duplicates():
    with metrics_service(task="classification", classes=["a", "b"]) as client:
        body = {"request": {"data": {"ndarray": [[1.0, 2.0], [3.0, 4.0]]}},
                "response": {"data": {"ndarray": [[0.9, 0.1], [0.2, 0.8]]}},
                "truth": {"data": {"ndarray": [[1, 0], [1, 0]]}}, "reward": 0.5}
        ok(send(client, "io.seldon.serving.feedback", "s-1", body, id="fb-1"))
        status = client.get("/status").json()["metrics"]
        assert status["matched"] == 1 and status["instances"] == 2 and status["pending"] == 0
        assert status["accuracy"] == pytest.approx(0.5)
        # the logger's own response event for the same inference, and a retried feedback (same ce-id,
        # dropped by the frame's de-duplication): ignored. A new feedback event would be a correction.
        ok(send(client, RESPONSE, "s-1", {"predictions": [0, 1]}))
        ok(send(client, "io.seldon.serving.feedback", "s-1", body, id="fb-1"))
        status = client.get("/status").json()["metrics"]
        assert status["instances"] == 2 and status["pending"] == 0 and status["duplicates"] == 1
        assert status["corrections"] == 0
        samples = scrape(client)
        assert metric(samples, "vigil_events_duplicate_total") == 1
        assert metric(samples, "vigil_metrics_true_positives_total", **{"class": "a"}) == 1
        assert metric(samples, "vigil_metrics_false_negatives_total", **{"class": "a"}) == 1
        assert metric(samples, "vigil_metrics_false_positives_total", **{"class": "b"}) == 1
        assert metric(samples, "vigil_metrics_true_negatives_total", **{"class": "b"}) == 1


def test_bad_input_is_rejected_and_service_keeps_working():
    with metrics_service(task="classification", classes=["x", "y"]) as client:
        bad = [
            (FEEDBACK, {"label": 1}, 400, "bad_body"),  # no truth
            (FEEDBACK, {"truth": ["z"]}, 400, "unknown_class"),
            (FEEDBACK, {"truth": [7]}, 400, "unknown_class"),
            (FEEDBACK, {"truth": [[0.2, 0.3, 0.5]]}, 400, "class_count"),
            (RESPONSE, {"predictions": [0.3, float("nan")]}, 400, "non_numeric"),
            (RESPONSE, {"predictions": [[1, 2], [3]]}, 400, "bad_shape"),
            (RESPONSE, {"result": 1}, 400, "bad_body"),
        ]
        for ce_type, data, code, reason in bad:
            resp = send(client, ce_type, "bad", data)
            assert resp.status_code == code, (data, resp.text)
            assert resp.json()["reason"] == reason and resp.json()["error"]
        # not JSON at all, and a wrong content type
        headers = {"ce-type": FEEDBACK, "ce-source": "/t", "ce-id": "1", "ce-specversion": "1.0",
                   "ce-inferenceid": "bad", "content-type": "application/json"}
        assert client.post("/", headers=headers, content=b"{truth: ").status_code == 400
        assert client.post("/", headers={**headers, "content-type": "text/plain"}, content=b"1").status_code == 415
        # row count mismatch at join time: 422, and the pair is dropped
        ok(send(client, RESPONSE, "rows", {"predictions": [0, 1]}))
        resp = send(client, FEEDBACK, "rows", {"truth": [0, 1, 1]})
        assert resp.status_code == 422 and resp.json()["reason"] == "row_mismatch"
        # still works afterwards
        ok(send(client, RESPONSE, "good", {"predictions": [1]}))
        ok(send(client, FEEDBACK, "good", {"truth": "y"}))
        status = client.get("/status").json()
        assert status["metrics"]["accuracy"] == 1.0 and status["metrics"]["instances"] == 1
        assert status["events"]["rejected"] == len(bad) + 3
        samples = scrape(client)
        assert metric(samples, "vigil_events_rejected_total", reason="unknown_class") == 2
        assert metric(samples, "vigil_events_rejected_total", reason="row_mismatch") == 1
        assert metric(samples, "vigil_metrics_true_positives_total", **{"class": "y"}) == 1
