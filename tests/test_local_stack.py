"""End to end on loopback: `vigil up`'s backend runs model, logger, drift and metrics as real
processes; a client's inferences and feedback flow through; a real Prometheus scrapes them.
"""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.prom import free_port_range, need, prometheus, wait_for
from vigil.events import v2_request
from vigil.local import LocalStack, local_plan
from vigil.spec import load_monitor

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINDOW = 100

MONITOR = f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata: {{name: e2e, namespace: test}}
spec:
  model: {{storageUri: model.joblib, format: sklearn, name: iris}}
  schema: {{featureNames: [{", ".join(FEATURES)}]}}
  reference: {{storageUri: reference.csv}}
  detectors:
    drift: {{pValue: 0.05, window: {{size: {WINDOW}, mode: tumbling, maxAge: 10m}}}}
    metrics: {{task: classification, classes: [setosa, versicolor, virginica], window: {WINDOW}}}
"""


def _files(tmp_path):
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), tmp_path / "model.joblib")
    rng = np.random.default_rng(0)
    ref = x[rng.integers(0, len(x), 500)] + rng.normal(0, 0.05, (500, 4))
    np.savetxt(tmp_path / "reference.csv", ref, delimiter=",", header=",".join(FEATURES), comments="")
    (tmp_path / "monitor.yaml").write_text(MONITOR)
    return x, y


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    x, y = _files(tmp)
    monitor = load_monitor(tmp / "monitor.yaml")
    plan, placement = local_plan(monitor, tmp, tmp / "work", free_port_range(6))
    s = LocalStack(plan, placement, say=lambda _: None)
    s.start(timeout=120)
    try:
        yield s, x, y, tmp
    finally:
        s.stop()


def _send(client, urls, rows, truth):
    ids = []
    for i in range(0, len(rows), 10):
        r = client.post(f"{urls['logger']}/v2/models/iris/infer", json=v2_request(rows[i:i + 10]),
                        headers={"x-request-id": f"req-{len(ids)}-{time.monotonic_ns()}"})
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-inference-id"])
        fb = client.post(f"{urls['logger']}/feedback", json={"inferenceId": ids[-1], "truth": truth[i:i + 10].tolist()})
        assert fb.status_code in (200, 202), fb.text
    return ids


def _settle(client, urls, windows, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drift = client.get(f"{urls['drift']}/status").json()["drift"]
        if drift["windows"] >= windows:
            return drift
        time.sleep(0.2)
    raise AssertionError(f"drift never reached {windows} windows: {drift}")


def test_round_trip_prometheus_and_status(stack):
    s, x, y, tmp = stack
    urls = s.component_urls()
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(x), 2 * WINDOW)
    normal = x[idx] + rng.normal(0, 0.05, (2 * WINDOW, 4))
    with httpx.Client(timeout=10) as client, prometheus(list(urls.values()), tmp) as query:
        ids = _send(client, urls, normal, y[idx])
        # the client's x-request-id is the inference id the logger returns
        assert all(i.startswith("req-") for i in ids)
        drift = _settle(client, urls, 2)
        assert drift["detected"] is False
        # metrics joined every response with its feedback: ids matched across logger and detectors
        deadline = time.monotonic() + 20
        while True:
            m = client.get(f"{urls['metrics']}/status").json()["metrics"]
            if m.get("feedback", 0) >= len(ids) and m.get("accuracy") is not None and m.get("pending", 0) == 0:
                break
            assert time.monotonic() < deadline, m
            time.sleep(0.2)
        assert m["accuracy"] > 0.9

        shifted = normal.copy()
        shifted[:, 2] += 2.0
        _send(client, urls, shifted[:WINDOW], y[idx][:WINDOW])
        drift = _settle(client, urls, 3)
        assert drift["detected"] is True
        assert "petal_length" in drift["featuresDrifted"]

        # a real Prometheus scraped the services
        result = wait_for(query, 'vigil_drift_detected{monitor="e2e",namespace="test"}',
                          predicate=lambda r: r and r[0]["value"][1] == "1")
        assert result[0]["metric"]["job"] == "vigil"
        sent = wait_for(query, 'sum by (sink) (vigil_logger_events_sent_total{monitor="e2e"})',
                        predicate=lambda r: len(r) == 2)
        assert {r["metric"]["sink"] for r in sent} == {"drift", "metrics"}
        reqs = wait_for(query, 'sum(vigil_logger_requests_total{code="200"})',
                        predicate=lambda r: r and float(r[0]["value"][1]) >= 3 * WINDOW / 10)
        assert float(reqs[0]["value"][1]) >= 30
        assert wait_for(query, "up == 0", predicate=lambda r: r == [], timeout=5) == []

    # `vigil status` reads the running stack's run file and prints the summary
    out = subprocess.run([sys.executable, "-m", "vigil", "status", "--workdir", str(s.workdir), "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    status = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    assert status["phase"] == "Ready"
    assert set(status["components"]) == {"logger", "model", "drift", "metrics"}
    assert status["drift"]["detected"] is True


@pytest.mark.parametrize("component", ["logger", "model", "drift", "metrics"])
def test_every_metrics_endpoint_passes_promtool(stack, component):
    s, *_ = stack
    promtool = need("promtool")
    text = httpx.get(f"{s.component_urls()[component]}/metrics").text
    assert "vigil_" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_vigil_up_stops_everything_on_sigterm(tmp_path):
    _files(tmp_path)
    base = free_port_range(6)
    proc = subprocess.Popen([sys.executable, "-m", "vigil", "up", str(tmp_path / "monitor.yaml"),
                             "--base-port", str(base), "--workdir", str(tmp_path / "w")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_file = tmp_path / "w" / "run.json"
    deadline = time.monotonic() + 120
    while not run_file.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "vigil up never became ready"
        time.sleep(0.3)
    pids = json.loads(run_file.read_text())["pids"]
    assert httpx.get(f"http://127.0.0.1:{base}/readyz").status_code == 200
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{base}/v2/models/iris/infer" in out  # printed endpoints
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not run_file.exists()
