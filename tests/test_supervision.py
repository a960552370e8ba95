"""`vigil up` under faults, as real processes on loopback (DESIGN §11):

- pre-flight: `vigil validate` (and `vigil up`) on each broken monitor exit 2 in seconds, one
  line per problem, no traceback;
- supervision: kill -9 each detector under load — inference answers 200 throughout, the
  detector comes back (the 30 s of DESIGN is measured by bench/probe_edges.py), `vigil status`
  shows the restart; only SIGTERM stops the stack;
- `vigil status monitor.yaml` reads that monitor's run file, names it, exits non-zero when
  not Ready, takes -o yaml.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import joblib
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.prom import free_port_range
from vigil.events import v2_request

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _monitor(name="sup", model="model.joblib", fmt="sklearn", features=FEATURES, reference="reference.csv",
             detectors="drift: {window: {size: 50}}\n    metrics: {task: classification, classes: [0, 1, 2]}"):
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata: {{name: {name}, namespace: test}}
spec:
  model: {{storageUri: {model}, format: {fmt}, name: iris}}
  schema: {{featureNames: [{", ".join(features)}]}}
  reference: {{storageUri: {reference}}}
  detectors:
    {detectors}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sup")
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), d / "model.joblib")
    joblib.dump(LinearRegression().fit(x, y), d / "regressor.joblib")
    (d / "model.json").write_text('{"learner": {"attributes": {}}, "version": [2, 0, 0]}')
    np.savetxt(d / "reference.csv", x, delimiter=",", header=",".join(FEATURES), comments="")
    cat = np.column_stack([x, np.arange(len(x)) % 3])
    np.savetxt(d / "reference5.csv", cat, delimiter=",", header=",".join(FEATURES + ["kind"]), comments="")
    return d, x, y


def _vigil(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, timeout=timeout, **kw)


# -- pre-flight -----------------------------------------------------------------------------------

BROKEN = {
    "missing reference": (dict(reference="missing.csv"), ["spec.reference.storageUri", "missing.csv does not exist"]),
    "missing model": (dict(model="nope.joblib"), ["spec.model.storageUri", "nope.joblib does not exist"]),
    "wrong format (joblib as xgboost)": (dict(fmt="xgboost"), ["as a xgboost model", "looks like a sklearn model"]),
    "wrong format (xgboost json as sklearn)": (dict(model="model.json"), ["looks like a xgboost model"]),
    "wrong format (joblib as tensorflow)": (dict(fmt="tensorflow"), ["is not a tensorflow model",
                                                                      "looks like a sklearn model"]),
    "width mismatch": (dict(features=FEATURES[:3]), ["3 features declared but the model takes 4 inputs"]),
    "regressor with explainer": (dict(model="regressor.joblib", detectors="explainer: {}"),
                                 ["spec.detectors.explainer", "need a classifier", "regressor"]),
    "reference without a declared column": (dict(features=FEATURES[:3] + ["petal_area"], model="regressor.joblib",
                                                 detectors="drift: {}"), ["spec.reference.storageUri", "petal_area"]),
    "bad setting": (dict(detectors="drift: {window: {size: 10, mode: sliding, step: 20}}"),
                    ["spec.detectors.drift.window.step"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_validate_reports_each_broken_monitor_in_one_line(files, case):
    d, *_ = files
    kw, expected = BROKEN[case]
    (d / f"{case}.yaml").write_text(_monitor(**kw))
    started = time.monotonic()
    r = _vigil("validate", str(d / f"{case}.yaml"), "--no-ports")
    assert r.returncode == 2, r.stdout + r.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line]
    assert lines and all(line.startswith("error: ") for line in lines), r.stderr
    problem = next((line for line in lines if all(e in line for e in expected)), None)
    assert problem, f"{case}: {expected} not in one line of:\n{r.stderr}"
    if "tensorflow" in case:  # the file is not a TensorFlow model: TensorFlow was never imported
        assert "tensorflow" not in r.stderr.lower().replace("tensorflow model", "")


def test_validate_ok_notes_categorical_hints_and_taken_ports(files):
    d, *_ = files
    (d / "ok.yaml").write_text(_monitor())
    base = free_port_range(6)
    r = _vigil("validate", str(d / "ok.yaml"), "--base-port", str(base))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    # a feature with 3 distinct reference values not declared categorical: a note, not an error
    (d / "cat.yaml").write_text(_monitor(features=FEATURES + ["kind"], reference="reference5.csv",
                                         model="regressor.joblib", detectors="drift: {}"))
    r = _vigil("validate", str(d / "cat.yaml"), "--no-ports")
    assert "kind has 3 distinct reference values" in r.stdout and "categorical" in r.stdout
    assert "4 inputs" in r.stderr  # (and the 5-feature schema does not fit the 4-input model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 3))
        taken.listen()
        r = _vigil("validate", str(d / "ok.yaml"), "--base-port", str(base))
        assert r.returncode == 2
        assert f"port {base + 3} (drift) is in use" in r.stderr
        # vigil up runs the same pre-flight before training or starting anything
        up = _vigil("up", str(d / "ok.yaml"), "--base-port", str(base), "--workdir", str(d / "w-taken"))
        assert up.returncode == 2 and f"port {base + 3} (drift) is in use" in up.stderr
        assert not (d / "w-taken" / "logs").exists()


# -- supervision ----------------------------------------------------------------------------------

class Load(threading.Thread):
    """Inferences through the logger, as fast as one client goes, until stopped; records every code."""

    def __init__(self, url, x):
        super().__init__(daemon=True)
        self.url, self.x, self.codes, self.stop = url, x, [], threading.Event()

    def run(self):
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    r = client.post(self.url, json=v2_request(self.x[i % len(self.x):i % len(self.x) + 1]))
                    self.codes.append(r.status_code)
                except httpx.HTTPError as e:
                    self.codes.append(type(e).__name__)
                i += 1
                time.sleep(0.01)


#: How long a killed component may take to be back in these tests. DESIGN wants 30 s; a timing
#: is a benchmark's to measure on a quiet machine (bench/probe_edges.py --workdir prints each
#: restart time against 30 s) — a loaded test machine takes longer just to import TensorFlow.
BACK_WITHIN = 120.0


def _kill_and_wait_back(name, port, run_file, output, work):
    """SIGKILL one component of a running `vigil up`; it comes back (a new pid, ready)."""
    time.sleep(1.0)
    pid = json.loads(run_file.read_text())["pids"][name]
    restarts = json.loads(run_file.read_text())["restarts"][name]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + BACK_WITHIN
    while True:  # back: a new process, ready
        try:
            back = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            back = False
        if back and json.loads(run_file.read_text())["pids"][name] != pid:
            break
        assert time.monotonic() < deadline, f"{name} not back within {BACK_WITHIN:.0f} s:\n{''.join(output)}"
        time.sleep(0.2)
    assert f"{name} killed by SIGKILL" in "".join(output)
    doc = json.loads(_vigil("status", "--workdir", str(work), "-o", "json").stdout)
    assert doc["restarts"][name] == restarts + 1
    assert doc["lastExit"][name] == "killed by SIGKILL"


def _start_up(d, monitor_file, base, work, *extra):
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "vigil", "up", str(monitor_file), "--base-port", str(base),
                             "--workdir", str(work), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()
    return proc, output


def _wait_run_file(proc, run_file, output, timeout=120):
    deadline = time.monotonic() + timeout
    while not run_file.exists():
        assert proc.poll() is None, "".join(output)
        assert time.monotonic() < deadline, "vigil up never became ready:\n" + "".join(output)
        time.sleep(0.3)


@pytest.mark.slow
def test_kill_9_each_detector_under_load(files):
    d, x, y = files
    (d / "sup.yaml").write_text(_monitor())
    base = free_port_range(6)
    work = d / "w-sup"
    (d / "token").write_text("tok-123\n")  # auth on, from a token file: the inference path stays open
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "vigil", "up", str(d / "sup.yaml"), "--base-port", str(base),
                             "--workdir", str(work), "--token-file", str(d / "token")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()
    run_file = work / "run.json"
    try:
        deadline = time.monotonic() + 120
        while not run_file.exists():
            assert proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "vigil up never became ready"
            time.sleep(0.3)
        status = _vigil("status", str(d / "sup.yaml"), "-o", "json", "--workdir", str(work))
        assert status.returncode == 0, status.stdout + status.stderr
        doc = json.loads(status.stdout)
        assert doc["monitor"] == "sup" and doc["restarts"] == {"logger": 0, "model": 0, "drift": 0, "metrics": 0}

        load = Load(f"http://127.0.0.1:{base}/v2/models/iris/infer", x)
        load.start()
        for name, port in (("drift", base + 3), ("metrics", base + 4)):
            _kill_and_wait_back(name, port, run_file, output, work)
        # the logger's warning about its dead sink reached the terminal, named by component
        assert any(line.startswith("  [logger] ") and " WARNING vigil.logger" in line and "sink drift" in line
                   for line in "".join(output).splitlines()), "".join(output)
        time.sleep(1.0)
        load.stop.set()
        load.join(15)
        assert len(load.codes) > 50
        assert set(load.codes) == {200}, {c: load.codes.count(c) for c in set(load.codes)}

        # --token-file: feedback and detectors need the token, the logger sends it to its sinks
        r = httpx.post(f"http://127.0.0.1:{base}/v2/models/iris/infer", json=v2_request(x[:1]))
        fb = {"inferenceId": r.headers["x-inference-id"], "truth": [int(y[0])]}
        assert httpx.post(f"http://127.0.0.1:{base}/feedback", json=fb).status_code == 401
        assert httpx.post(f"http://127.0.0.1:{base}/feedback", json=fb,
                          headers={"Authorization": "Bearer tok-123"}).status_code == 202
        assert httpx.post(f"http://127.0.0.1:{base + 3}/", json={}).status_code == 401
        deadline = time.monotonic() + 15
        while httpx.get(f"http://127.0.0.1:{base + 4}/status").json()["metrics"]["matched"] < 1:
            assert time.monotonic() < deadline, "the logger's events never reached metrics with the token"
            time.sleep(0.2)

        # status: yaml, names the monitor; a component down makes it exit non-zero
        text = _vigil("status", str(d / "sup.yaml"), "--workdir", str(work), "-o", "yaml")
        doc = yaml.safe_load(text.stdout)
        assert text.returncode == 0 and doc["monitor"] == "sup" and doc["phase"] == "Ready"
        plain = _vigil("status", str(d / "sup.yaml"), "--workdir", str(work))
        assert "MONITOR    sup" in plain.stdout and "restarts=1" in plain.stdout
        os.kill(json.loads(run_file.read_text())["pids"]["drift"], signal.SIGKILL)
        time.sleep(0.5)
        down = _vigil("status", "--workdir", str(work), "-o", "json")
        assert down.returncode != 0
        assert json.loads(down.stdout)["components"]["drift"] in ("Restarting", "Unreachable", "NotReady")
        assert proc.poll() is None  # a dead component never stops the stack
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, "".join(output)
    assert not run_file.exists()


def test_validate_never_imports_tensorflow_for_other_formats(files):
    d, *_ = files
    (d / "tf.yaml").write_text(_monitor(fmt="tensorflow"))
    (d / "plain.yaml").write_text(_monitor())
    code = ("import sys; from vigil.validate import validate_file; "
            f"p = validate_file({str(d / 'tf.yaml')!r}, check_ports=False)[0]; "
            f"q = validate_file({str(d / 'plain.yaml')!r}, check_ports=False)[0]; "
            "print(len(p), len(q), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "0", "False"], out.stdout + out.stderr


@pytest.mark.slow
def test_kill_9_outlier_and_explainer_under_load(files):
    """The TensorFlow detectors too: inference answers 200 while the outlier VAE and the
    explainer are killed and restarted (their trained artifacts are reused, not retrained)."""
    d, x, y = files
    (d / "tfdet.yaml").write_text(_monitor(name="tfdet", detectors=(
        "outlier: {epochs: 2, latentDim: 2}\n    explainer: {threshold: 0.9}")))
    base = free_port_range(6)
    work = d / "w-tfdet"
    proc, output = _start_up(d, d / "tfdet.yaml", base, work)
    run_file = work / "run.json"
    try:
        _wait_run_file(proc, run_file, output, timeout=300)
        load = Load(f"http://127.0.0.1:{base}/v2/models/iris/infer", x)
        load.start()
        for name, port in (("outlier", base + 2), ("explainer", base + 5)):
            _kill_and_wait_back(name, port, run_file, output, work)
        time.sleep(1.0)
        load.stop.set()
        load.join(15)
        assert len(load.codes) > 50
        assert set(load.codes) == {200}, {c: load.codes.count(c) for c in set(load.codes)}
        # the restarted detectors work: an outlier score for a new request, an explanation
        r = httpx.post(f"http://127.0.0.1:{base + 5}/explain", json=v2_request(x[:1]), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body["anchor"], list) and 0.0 <= body["precision"] <= 1.0 and body["prediction"] is not None
        deadline = time.monotonic() + 15
        seen = httpx.get(f"http://127.0.0.1:{base + 2}/status").json()["outliers"]["seen"]
        httpx.post(f"http://127.0.0.1:{base}/v2/models/iris/infer", json=v2_request(x[:1]))
        while httpx.get(f"http://127.0.0.1:{base + 2}/status").json()["outliers"]["seen"] <= seen:
            assert time.monotonic() < deadline, "the restarted outlier detector scores nothing"
            time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, "".join(output)
