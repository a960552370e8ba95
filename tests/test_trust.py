"""Trust under faults (DESIGN §11) with real servers on loopback: honest status, delivery, auth.

- a detector that rejects most of what it gets says so in /status and makes the monitor Degraded;
- a restored drift verdict older than maxAge is marked stale;
- a retried event (same ce-id) is processed once; later feedback corrects earlier feedback;
- a drift detector whose checkpoint disk is full answers 503, turns not-ready, counts the
  error, and recovers when the disk has room again (a real tmpfs when we may mount one);
- the optional bearer token, on and off, at the detectors and the logger (which sends it on).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import cloud_event, serve_ready
from tests.servers import metric_value, serve_app, wait_until
from vigil.events import FEEDBACK, REQUEST, RESPONSE
from vigil.status import summarize
from vigil_detectors.drift.service import create_app as drift_app
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.metrics.service import create_app as metrics_app
from vigil_detectors.metrics.settings import MetricsSettings

FEATURES = ["a", "b", "c", "d"]
REF = np.random.default_rng(7).normal(size=(500, 4))
TOKEN = "s3cret-token"
needs_drift = pytest.mark.tensorflow  # main's drift service still fits through alibi-detect (TensorFlow)


@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "reference.csv"
    pd.DataFrame(REF, columns=FEATURES).to_csv(path, index=False)
    return str(path)


def post(client, data, headers=None, ce_type=REQUEST, **attributes) -> httpx.Response:
    msg = cloud_event(data, ce_type, **attributes)
    return client.post("/", headers={**msg.headers, **(headers or {})}, content=msg.body)


service = serve_ready


def drift(ref_csv, **kw):
    return drift_app(DriftSettings(monitor="t", namespace="ns", feature_names=FEATURES, reference=ref_csv, **kw))


# -- honest status --------------------------------------------------------------------------------

@needs_drift
def test_a_detector_rejecting_most_events_is_degraded_with_the_reason(ref_csv):
    with service(drift(ref_csv, window_size=50)) as client:
        for _ in range(3):  # a few good events: still Ready
            assert post(client, {"instances": REF[:2].tolist()}).status_code == 202
        answer = client.get("/status").json()
        assert answer["recent"]["degraded"] is False
        assert summarize({"drift": answer})["phase"] == "Ready"
        for _ in range(20):  # featureNames one short of what the clients send
            r = post(client, {"instances": [[1.0, 2.0, 3.0, 4.0, 5.0]]})
            assert r.status_code == 400
        answer = client.get("/status").json()
        recent = answer["recent"]
        assert recent["degraded"] is True and recent["rejected"] == 20 and recent["events"] == 23
        assert recent["message"].startswith("drift rejected 20 of 23 events: ")
        assert "got 5" in recent["message"]
        status = summarize({"drift": answer, "logger": {"ready": True}})
        assert status["phase"] == "Degraded"
        assert status["components"] == {"drift": "Degraded", "logger": "Ready"}
        assert "drift rejected 20 of 23 events" in status["message"]
        assert status["conditions"][0]["reason"] == "ComponentsDegraded"


@needs_drift
def test_restored_verdict_older_than_max_age_is_stale(ref_csv, tmp_path):
    state = tmp_path / "state"
    with service(drift(ref_csv, window_size=30, state_dir=str(state), max_age_seconds=1.0)) as client:
        assert post(client, {"instances": REF[:30].tolist()}).status_code == 200  # one full window checked
        block = client.get("/status").json()["drift"]
        assert block["windows"] == 1 and block["stale"] is False
    time.sleep(1.5)
    with service(drift(ref_csv, window_size=30, state_dir=str(state), max_age_seconds=1.0)) as client:
        block = client.get("/status").json()["drift"]
        assert block["windows"] == 1 and block["stale"] is True
        assert post(client, {"instances": REF[30:60].tolist()}).status_code == 200  # a fresh verdict
        assert client.get("/status").json()["drift"]["stale"] is False
    with service(drift(ref_csv, window_size=30, state_dir=str(state), max_age_seconds=600)) as client:
        assert client.get("/status").json()["drift"]["stale"] is False  # within maxAge: current


# -- delivery -------------------------------------------------------------------------------------

@needs_drift
def test_a_retried_event_is_processed_once(ref_csv):
    with service(drift(ref_csv, window_size=100)) as client:
        event_id = str(uuid.uuid4())
        for _ in range(3):
            assert post(client, {"instances": REF[:5].tolist()}, id=event_id).status_code == 202
        assert client.get("/status").json()["drift"]["instances"] == 5
        text = client.get("/metrics").text
        assert metric_value(text, "vigil_events_duplicate_total") == 2
        # the same id with another type (KServe reuses ce-id for request and response) is another event
        assert post(client, {"instances": REF[:5].tolist()}, id=event_id, source="/other").status_code == 202
        assert client.get("/status").json()["drift"]["instances"] == 10
        # a rejected event is not remembered: its corrected retry is processed
        bad_id = str(uuid.uuid4())
        assert post(client, {"instances": [[1, 2]]}, id=bad_id).status_code == 400
        assert post(client, {"instances": REF[:1].tolist()}, id=bad_id).status_code == 202
        assert client.get("/status").json()["drift"]["instances"] == 11


def test_later_feedback_replaces_the_earlier_one(tmp_path):
    settings = MetricsSettings(monitor="t", namespace="ns", task="classification", classes=["a", "b"], window=10)
    with service(metrics_app(settings)) as client:
        for i in range(4):
            iid = f"inf-{i}"
            assert post(client, {"predictions": [0]}, ce_type=RESPONSE, inferenceid=iid).status_code == 202
            assert post(client, {"truth": ["b"]}, ce_type=FEEDBACK, inferenceid=iid).status_code == 202
        m = client.get("/status").json()["metrics"]
        assert m["accuracy"] == 0.0 and m["accuracyCumulative"] == 0.0
        for i in range(3):  # the truth was "a" after all, for three of them
            assert post(client, {"truth": ["a"]}, ce_type=FEEDBACK, inferenceid=f"inf-{i}").status_code == 202
        m = client.get("/status").json()["metrics"]
        assert m["corrections"] == 3 and m["feedback"] == 4
        assert m["accuracy"] == 0.75 and m["accuracyCumulative"] == 0.75
        text = client.get("/metrics").text
        assert metric_value(text, "vigil_metrics_feedback_corrections_total") == 3
        assert metric_value(text, "vigil_metrics_accuracy", window="recent") == 0.75


def test_regression_corrections_match_scoring_from_scratch():
    from vigil_detectors.metrics.scoring import RegressionScorer

    rng = np.random.default_rng(0)
    y, yhat, fixed = rng.normal(size=30), rng.normal(size=30), rng.normal(size=30)
    corrected = RegressionScorer(window=20)
    starts = []
    for i in range(0, 30, 3):
        starts.append(corrected.seq)
        corrected.update(y[i:i + 3], yhat[i:i + 3])
    for k, i in enumerate(range(0, 30, 3)):
        if k % 2 == 0:
            corrected.correct(starts[k], y[i:i + 3], fixed[i:i + 3], yhat[i:i + 3])
    truth = np.concatenate([fixed[i:i + 3] if k % 2 == 0 else y[i:i + 3] for k, i in enumerate(range(0, 30, 3))])
    scratch = RegressionScorer(window=20)
    scratch.update(truth, yhat)
    for got, want in ((corrected.cumulative(), scratch.cumulative()), (corrected.recent(), scratch.recent())):
        for key in ("mae", "mse", "r2"):
            assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-9)


# -- disk full ------------------------------------------------------------------------------------

@contextmanager
def small_disk(path, size="64k"):
    """A real tmpfs of `size` at `path` when we may mount one (root), else skip."""
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@needs_drift
def test_full_checkpoint_disk_answers_503_not_ready_and_recovers(ref_csv, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "drift"
        with service(drift(ref_csv, window_size=100000, state_dir=str(state))) as client:
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as f:  # fill the file system to the last byte
                for size in (4096, 512, 64, 8, 1):
                    try:
                        while True:
                            f.write(b"\0" * size)
                    except OSError:
                        pass
            answers = [post(client, {"instances": REF[:50].tolist()}).status_code for _ in range(5)]
            assert 503 in answers and all(a in (202, 503) for a in answers)
            kept = answers.count(202)
            assert client.get("/readyz").status_code == 503
            status = client.get("/status").json()
            assert status["ready"] is False and "checkpoint" in status["error"]
            assert status["drift"]["instances"] == 50 * kept  # nothing counted that was not kept
            text = client.get("/metrics").text
            assert metric_value(text, "vigil_checkpoint_errors_total") >= answers.count(503)
            assert metric_value(text, "vigil_events_rejected_total", reason="checkpoint") == answers.count(503)
            filler.unlink()  # room again: the next event is kept and the detector is ready
            assert post(client, {"instances": REF[:50].tolist()}).status_code == 202
            assert client.get("/readyz").status_code == 200
            assert client.get("/status").json()["drift"]["instances"] == 50 * (kept + 1)
        # every kept event is in the checkpoint and a restart finds exactly those (no torn record)
        with service(drift(ref_csv, window_size=100000, state_dir=str(state))) as client:
            assert client.get("/status").json()["drift"]["instances"] == 50 * (kept + 1)


# -- auth -----------------------------------------------------------------------------------------

@needs_drift
def test_detector_requires_the_token_when_set(ref_csv, monkeypatch):
    monkeypatch.setenv("VIGIL_TOKEN", TOKEN)
    with service(drift(ref_csv, window_size=100)) as client:
        assert post(client, {"instances": REF[:1].tolist()}).status_code == 401
        r = post(client, {"instances": REF[:1].tolist()}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        assert post(client, {"instances": REF[:1].tolist()}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 202
        for path in ("/metrics", "/healthz", "/readyz", "/status"):
            assert client.get(path).status_code == 200
        text = client.get("/metrics").text
        assert metric_value(text, "vigil_events_rejected_total", reason="unauthorized") == 2
        assert client.get("/status").json()["drift"]["instances"] == 1


@needs_drift
def test_detector_is_open_without_a_token(ref_csv, monkeypatch):
    monkeypatch.delenv("VIGIL_TOKEN", raising=False)
    with service(drift(ref_csv, window_size=100)) as client:
        assert post(client, {"instances": REF[:1].tolist()}).status_code == 202
        assert post(client, {"instances": REF[:1].tolist()}, headers={"Authorization": "Bearer x"}).status_code == 202


@pytest.mark.parametrize("token", [TOKEN, None])
def test_logger_feedback_auth_and_token_sent_to_sinks(ref_csv, monkeypatch, token):
    """Logger -> real metrics detector, both with (or both without) the token; inference stays open."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from vigil.logger.app import create_app as logger_app
    from vigil.logger.settings import LoggerSettings
    from vigil.modelserver.app import create_app as model_app
    from vigil.modelserver.settings import ModelServerSettings

    if token:
        monkeypatch.setenv("VIGIL_TOKEN", token)
    else:
        monkeypatch.delenv("VIGIL_TOKEN", raising=False)
    model_file = os.path.join(os.path.dirname(ref_csv), "model.joblib")
    joblib.dump(LogisticRegression().fit(REF, (REF[:, 0] > 0).astype(int)), model_file)
    metrics = MetricsSettings(monitor="t", namespace="ns", task="classification", classes=[0, 1])
    with service(metrics_app(metrics)) as det, \
            serve_app(model_app(ModelServerSettings(uri=model_file, format="sklearn", name="m"))) as model_url:
        sinks = [{"name": "metrics", "url": str(det.base_url).rstrip("/"), "types": ["response", "feedback"]}]
        with serve_app(logger_app(LoggerSettings(upstream=model_url, model_name="m", sinks=sinks))) as url, \
                httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v2/models/m/infer", json={"inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": REF[0].tolist()}]})
            assert r.status_code == 200  # the inference path never needs the token
            iid = r.headers["x-inference-id"]
            fb = {"inferenceId": iid, "truth": [int(REF[0, 0] > 0)]}
            anonymous = client.post("/feedback", json=fb)
            assert anonymous.status_code == (401 if token else 202)
            if token:
                assert client.post("/feedback", json=fb, headers={"Authorization": "Bearer nope"}).status_code == 401
                assert client.post("/feedback", json=fb, headers={"Authorization": f"Bearer {token}"}).status_code == 202
                assert metric_value(client.get("/metrics").text, "vigil_logger_requests_total", code="401") == 2
            # the logger's events reached the detector with the token: the pair was joined and scored
            wait_until(lambda: det.get("/status").json()["metrics"]["matched"] == 1, timeout=10, what="scored")
            assert metric_value(det.get("/metrics").text, "vigil_events_rejected_total", reason="unauthorized") == 0
            for path in ("/metrics", "/healthz", "/readyz", "/status"):
                assert client.get(path).status_code in (200, 503)  # open (readyz may wait for the model)


# -- the operator: the same Degraded phase and the token from a Secret ----------------------------

def _operator_example(**spec):
    import yaml

    from tests.test_operator_manifests import ROOT

    doc = yaml.safe_load((ROOT / "examples" / "iris-monitor.yaml").read_text())
    doc["spec"]["detectors"] = {"drift": {"pValue": 0.05}}
    doc["spec"].update(spec)
    return doc


def test_operator_status_is_degraded_with_the_components_reason():
    from tests.test_operator_manifests import converged, deployment_state
    from vigil_operator.status import compose

    deps = {c: deployment_state(True) for c in ("logger", "model", "drift")}
    answers = {c: {"component": c, "ready": True} for c in deps}
    answers["drift"]["recent"] = {"degraded": True, "events": 111, "rejected": 111, "skipped": 0,
                                  "message": "drift rejected 111 of 111 events: expected 9 features per row, got 10"}
    status = compose(converged(_operator_example(), deps), answers, {}, 2)
    assert status["phase"] == "Degraded"
    assert status["components"]["drift"] == "Degraded"
    assert status["message"] == "drift rejected 111 of 111 events: expected 9 features per row, got 10"
    assert status["conditions"][0]["status"] == "False"
    assert status["conditions"][0]["reason"] == "ComponentsDegraded"


def test_operator_puts_the_token_secret_in_every_pod():
    from tests.test_operator_manifests import pod_spec, render

    ref = {"name": "iris-token", "key": "token"}
    plan, _, rendered = render(_operator_example(security={"tokenSecret": ref}))
    deployments = [o for o in rendered.all() if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"].rsplit("-", 1)[-1] for d in deployments} >= {"logger", "model", "drift"}
    for d in deployments:
        env = {e["name"]: e for e in pod_spec(d)["containers"][0]["env"]}
        assert env["VIGIL_TOKEN"] == {"name": "VIGIL_TOKEN", "valueFrom": {"secretKeyRef": ref}}
    plain, _, rendered_plain = render(_operator_example())
    for d in (o for o in rendered_plain.all() if o["kind"] == "Deployment"):
        assert "VIGIL_TOKEN" not in {e["name"] for e in pod_spec(d)["containers"][0]["env"]}
    # turning auth on rolls the pods (their digest changes)
    assert {c.name: c.digest() for c in plan.components} != {c.name: c.digest() for c in plain.components}


def test_model_server_and_logger_report_recent_rejections(tmp_path):
    """A model server answering 4xx to most requests (featureNames one short) is Degraded, and says why."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from vigil.modelserver.app import create_app as model_app
    from vigil.modelserver.settings import ModelServerSettings

    joblib.dump(LogisticRegression().fit(REF, (REF[:, 0] > 0).astype(int)), tmp_path / "model.joblib")
    with serve_app(model_app(ModelServerSettings(uri=str(tmp_path / "model.joblib"), name="m"))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/models/m:predict", json={"instances": REF[:1].tolist()}).status_code == 200
        assert client.get("/status").json()["recent"]["degraded"] is False
        for _ in range(12):
            assert client.post("/v1/models/m:predict", json={"instances": [[1, 2, 3]]}).status_code in (400, 422)
        answer = client.get("/status").json()
        assert answer["recent"]["degraded"] is True and answer["recent"]["rejected"] == 12
        assert answer["recent"]["message"].startswith("model rejected 12 of 13 events: ")
        assert summarize({"model": answer})["phase"] == "Degraded"
