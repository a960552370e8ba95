"""Capture and replay over real HTTP: client -> logger (capture on) -> model server, with real
drift and metrics detectors as the logger's sinks, on loopback.

Files rotate and hold exactly the events sent (ids, kinds, bodies, the sinks' ce-ids); an
unwritable location never fails inference and is counted; `vigil replay` into fresh
detectors backfills them to the live counts, and replaying twice counts nothing twice.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.conftest import serve_ready
from tests.servers import EventSink, metric_value, serve_app, wait_until
from vigil.capture.reader import capture_files, iter_records
from vigil.capture.record import NAME
from vigil.cli import main as vigil
from vigil.events import v2_request
from vigil.logger.app import create_app as logger_app
from vigil.logger.settings import LoggerSettings
from vigil.modelserver.app import create_app as model_app
from vigil.modelserver.settings import ModelServerSettings
from vigil_detectors.drift.service import create_app as drift_app
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.metrics.service import create_app as metrics_app
from vigil_detectors.metrics.settings import MetricsSettings

X, Y = load_iris(return_X_y=True)
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
INFER = "/v2/models/iris/infer"


@pytest.fixture(scope="module")
def model_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), path)
    with serve_app(model_app(ModelServerSettings(uri=str(path), name="iris"))) as url:
        yield url


@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "reference.csv"
    pd.DataFrame(X, columns=FEATURES).to_csv(path, index=False)
    return str(path)


@contextmanager
def detectors(ref_csv: str, state: Path):
    """A fresh drift (window 40) and metrics detector; yields their clients."""
    with ExitStack() as stack:
        drift = stack.enter_context(serve_ready(drift_app(DriftSettings(
            monitor="iris", namespace="ns", feature_names=FEATURES, reference=ref_csv, window_size=40,
            max_age_seconds=0, state_dir=str(state)))))
        metrics = stack.enter_context(serve_ready(metrics_app(MetricsSettings(
            monitor="iris", namespace="ns", task="classification", classes=[0, 1, 2]))))
        yield drift, metrics


def logger(upstream: str, capture: dict, sinks=()):
    settings = LoggerSettings(upstream=upstream, monitor="iris", namespace="ns", model_name="iris",
                              sinks=[{"name": n, "url": u, "types": list(t)} for n, u, t in sinks], capture=capture)
    return serve_app(logger_app(settings))


def traffic(url: str, n: int, seconds: float, feedback: bool = True) -> list[dict]:
    """`n` one-row inferences spread over `seconds` (and their feedback); what was sent and answered."""
    sent = []
    with httpx.Client(timeout=10) as c:
        for i in range(n):
            body = json.dumps(v2_request(X[i * 3 % len(X): i * 3 % len(X) + 1])).encode()
            r = c.post(url + INFER, content=body, headers={"content-type": "application/json", "ce-id": f"inf-{i}"})
            assert r.status_code == 200, r.text
            item = {"id": r.headers["x-inference-id"], "request": body, "response": r.content,
                    "truth": int(Y[i * 3 % len(Y)])}
            if feedback:
                f = c.post(url + "/feedback", json={"inferenceId": item["id"], "truth": item["truth"]})
                assert f.status_code == 202, f.text
            sent.append(item)
            time.sleep(seconds / n)
    return sent


def status(client: httpx.Client, key: str) -> dict:
    return client.get("/status").json()[key]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_capture_rotates_and_holds_exactly_what_was_sent(model_url, tmp_path, fmt):
    out = tmp_path / "capture"
    sink = EventSink()
    with serve_app(sink.app) as sink_url, \
            logger(model_url, {"uri": f"file://{out}", "format": fmt, "rotate_seconds": 1.0},
                   [("all", sink_url, ("request", "response", "feedback"))]) as url:
        sent = traffic(url, 30, 2.5)
        started = time.monotonic()
        # readable while the logger still runs: within rotate + 10 s (JSONL: at the next flush)
        records = wait_until(lambda: (lambda r: r if len(r) == 90 else None)(list(iter_records(str(out)))),
                             timeout=11.0, interval=0.2, what="90 records readable")
        readable_after = time.monotonic() - started
        events = sink.wait_for(90)
        text = httpx.get(url + "/metrics").text
    assert readable_after < 11.0
    files = capture_files(str(out))
    assert len(files) >= 3, files  # 2.5 s of traffic, rotated every second
    assert all(NAME.match(Path(f).name) and f.endswith("." + fmt) for f in files)
    assert len(set(files)) == len(files)
    by_key = {(r.kind, r.inference_id): r for r in records}
    assert len(by_key) == 90  # one record per event, none twice
    for item in sent:
        req, resp, fb = (by_key[(k, item["id"])] for k in ("request", "response", "feedback"))
        assert req.data == item["request"]  # the body as sent, byte for byte
        assert resp.data == item["response"]
        assert fb.json() == {"truth": item["truth"]}
        assert req.ce_type == "dev.vigil.inference.request" and fb.ce_type == "dev.vigil.inference.feedback"
        assert (req.model, req.monitor, req.namespace, req.endpoint) == ("iris", "iris", "ns", INFER)
        assert req.content_type == "application/json"
    # the record keeps the ce-id the sinks got: a replay is de-duplicated by the detectors
    assert {r.id for r in records} == {e.attributes["id"] for e in events}
    assert metric_value(text, "vigil_capture_records_total") == 90
    assert metric_value(text, "vigil_capture_errors_total") == 0
    assert metric_value(text, "vigil_capture_records_dropped_total") == 0
    times = [r.time.timestamp() for r in records]
    assert max(times) - min(times) < 5 and min(times) > time.time() - 60


def test_sample_rate_keeps_pairs_and_all_feedback(model_url, tmp_path):
    out = tmp_path / "capture"
    with logger(model_url, {"uri": str(out), "sample_rate": 0.5}) as url:
        sent = traffic(url, 60, 0.1)
    records = list(iter_records(str(out)))
    kinds = {k: {r.inference_id for r in records if r.kind == k} for k in ("request", "response", "feedback")}
    assert kinds["request"] == kinds["response"]  # one draw per inference
    assert 10 <= len(kinds["request"]) <= 50  # ~30 of 60 (binomial, p=0.5: outside is < 1e-6)
    assert kinds["feedback"] == {s["id"] for s in sent}  # feedback is never sampled away


def test_unwritable_location_serves_and_counts(model_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    sink = EventSink()
    with serve_app(sink.app) as sink_url, \
            logger(model_url, {"uri": str(blocker / "capture"), "rotate_seconds": 1.0},
                   [("all", sink_url, ("request", "response"))]) as url:
        sent = traffic(url, 20, 1.5, feedback=False)  # every inference 200 (asserted in traffic)
        sink.wait_for(40)  # the detectors' events are unaffected
        # every record is dropped and counted once the writer has tried (with backoff: 1 s, then 2 s)
        text = wait_until(lambda: (lambda t: t if metric_value(t, "vigil_capture_records_dropped_total") == 40
                                   else None)(httpx.get(url + "/metrics").text), timeout=15, what="40 drops counted")
        st = httpx.get(url + "/status").json()["logger"]["capture"]
    assert len(sent) == 20
    assert metric_value(text, "vigil_capture_records_total") == 0
    assert metric_value(text, "vigil_capture_errors_total", reason="open") >= 1
    assert metric_value(text, "vigil_capture_records_dropped_total", reason="write_error") == 40
    assert st["queueDepth"] == 0 and st["dropped"] == {"write_error": 40}
    assert st["lastError"] and "NotADirectoryError" in st["lastError"]
    assert not blocker.with_name("capture").exists()


def test_replay_backfills_fresh_detectors_once(model_url, ref_csv, tmp_path, capsys):
    out = tmp_path / "capture"
    with detectors(ref_csv, tmp_path / "live") as (drift, metrics):
        with logger(model_url, {"uri": str(out), "rotate_seconds": 1.0},
                    [("drift", str(drift.base_url), ("request",)),
                     ("metrics", str(metrics.base_url), ("response", "feedback"))]) as url:
            traffic(url, 90, 1.5)
        wait_until(lambda: status(drift, "drift")["instances"] == 90 and status(metrics, "metrics")["matched"] == 90,
                   timeout=15, what="live detectors to see every event")
        live_drift, live_metrics = status(drift, "drift"), status(metrics, "metrics")
    assert len(capture_files(str(out))) >= 2
    with detectors(ref_csv, tmp_path / "fresh") as (drift, metrics):
        for _ in range(2):  # twice: the second time every event is a duplicate
            assert vigil(["replay", str(out), "--to", f"{drift.base_url}/", "--kind", "request"]) == 0
            assert capsys.readouterr().out.strip().endswith("sent 90, failed 0 (duplicates are dropped by the detectors)")
            assert vigil(["replay", str(out), "--to", f"{metrics.base_url}/", "--speed", "100"]) == 0
            assert "sent 270, failed 0" in capsys.readouterr().out
            d, m = status(drift, "drift"), status(metrics, "metrics")
            assert (d["instances"], d["windows"]) == (live_drift["instances"], live_drift["windows"]) == (90, 2)
            assert (m["feedback"], m["matched"]) == (live_metrics["feedback"], live_metrics["matched"]) == (90, 90)
            assert m["accuracy"] == live_metrics["accuracy"]
        assert metric_value(drift.get("/metrics").text, "vigil_events_duplicate_total") == 90
        assert metric_value(drift.get("/metrics").text, "vigil_drift_instances_total") == 90
