"""The drift detector over real HTTP on loopback, fed real binary-mode CloudEvents.

Servers are real uvicorn servers on 127.0.0.1 (in a thread, or `vigil serve drift` as a
subprocess for the crash test). The statistics are Vigil's own on NumPy/SciPy (their
equality with alibi-detect is in test_drift_statistics.py); expected p-values are computed
here with scipy on the same windows, independently of the service. Covered: detection on
shifted data and none on stationary data, per-feature p-values and distances in /status
and /metrics, chi-squared for categorical features, tumbling vs sliding windows, maxAge on
a quiet stream, bad events (4xx, window untouched), SIGKILL mid-window and restart (window
restored), our/KServe/Seldon event types with V2 and V1 bodies, single rows and batches,
saved artifacts (Vigil's and alibi-detect's), `promtool check metrics`, and the
window/checkpoint logic on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from tests.conftest import cloud_event, serve_ready
from tests.servers import free_port, metric_value, serve_app, serve_command, wait_until
from vigil.events import REQUEST, RESPONSE, v2_request
from vigil_detectors.drift.service import create_app
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import adjusted_min_p, fit_statistic
from vigil_detectors.drift.window import DriftWindow, WindowStore

FEATURES = ["a", "b", "c"]
RNG_REF = np.random.default_rng(42)
REF = RNG_REF.normal(size=(2000, 3))


# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "reference.csv"
    frame = pd.DataFrame(REF, columns=FEATURES)
    frame["label"] = 0  # extra columns are ignored
    frame.to_csv(path, index=False)
    return str(path)


@contextmanager
def drift_service(**settings):
    """A drift detector app in a real uvicorn server; yields an httpx client on it, once ready."""
    s = DriftSettings(monitor="t", namespace="ns", feature_names=settings.pop("feature_names", FEATURES),
                      **settings)
    with serve_ready(create_app(s), timeout=60, client_timeout=30) as client:
        yield client


def event(rows=None, *, body=None, ce_type=REQUEST, v2=False, **extra) -> tuple[dict, bytes]:
    if body is None:
        rows = np.asarray(rows, dtype=float)
        body = v2_request(rows) if v2 else {"instances": rows.tolist()}
    msg = cloud_event(body, ce_type, **extra)
    return dict(msg.headers), msg.body


def send(client: httpx.Client, rows=None, **kw) -> httpx.Response:
    headers, body = event(rows, **kw)
    return client.post("/", headers=headers, content=body)


def feed(client: httpx.Client, rows: np.ndarray, batch: int = 10) -> list[httpx.Response]:
    out = []
    for i in range(0, len(rows), batch):
        r = send(client, rows[i:i + batch])
        assert r.status_code in (200, 202), r.text
        out.append(r)
    return out


def drift_status(client: httpx.Client) -> dict:
    return client.get("/status").json()["drift"]


def metrics_text(client: httpx.Client) -> str:
    return client.get("/metrics").text


# -- detection ------------------------------------------------------------------------------------

def test_stationary_window_passes_shifted_window_drifts(ref_csv):
    rng = np.random.default_rng(6)
    with drift_service(reference=ref_csv, window_size=200, max_age_seconds=0) as c:
        stationary = rng.normal(size=(200, 3))
        replies = feed(c, stationary, batch=20)
        assert [r.status_code for r in replies] == [202] * 9 + [200]  # only the event completing the window
        reply = replies[-1]
        assert reply.headers["ce-type"] == "dev.vigil.detection.drift"
        body = reply.json()
        expected = [ks_2samp(REF[:, f], stationary[:, f], method="asymp").pvalue for f in range(3)]
        got = [body["drift"]["features"][n]["pValue"] for n in FEATURES]
        np.testing.assert_allclose(got, expected, rtol=1e-4)
        assert body["drift"]["detected"] is False and body["data"]["is_drift"] == 0
        assert body["drift"]["pValue"] == pytest.approx(min(1.0, 3 * min(expected)), rel=1e-4)

        shifted = rng.normal(size=(200, 3))
        shifted[:, 1] += 1.0
        body = feed(c, shifted, batch=20)[-1].json()["drift"]
        assert body["detected"] is True
        assert body["featuresDrifted"] == ["b"]
        assert body["threshold"] == pytest.approx(0.05 / 3)

        st = drift_status(c)
        assert st["detected"] is True and st["windows"] == 2 and st["fill"] == 0 and st["instances"] == 400
        assert st["featuresDrifted"] == ["b"] and st["statistic"] == "ks" and st["lastCheck"].endswith("Z")
        text = metrics_text(c)
        assert metric_value(text, "vigil_drift_detected") == 1
        assert metric_value(text, "vigil_drift_windows_total") == 2
        assert metric_value(text, "vigil_drift_instances_total") == 400
        for name in FEATURES:
            f = st["features"][name]
            assert metric_value(text, "vigil_drift_p_value", feature=name) == pytest.approx(f["pValue"])
            assert metric_value(text, "vigil_drift_distance", feature=name) == pytest.approx(f["distance"])
            assert f["distance"] == pytest.approx(ks_2samp(REF[:, FEATURES.index(name)],
                                                           shifted[:, FEATURES.index(name)], method="asymp").statistic, rel=1e-5)
        assert metric_value(text, "vigil_drift_checks_total", result="drift", trigger="full") == 1
        assert metric_value(text, "vigil_drift_checks_total", result="no_drift", trigger="full") == 1


def test_fdr_correction_and_adjusted_p_value(ref_csv):
    rng = np.random.default_rng(3)
    with drift_service(reference=ref_csv, window_size=100, correction="fdr", max_age_seconds=0) as c:
        x = rng.normal(size=(100, 3))
        x[:, 0] += 0.8
        body = feed(c, x, batch=100)[-1].json()["drift"]
        p = np.array([body["features"][n]["pValue"] for n in FEATURES])
        assert body["pValue"] == pytest.approx(adjusted_min_p(p, "fdr"))
        assert body["detected"] is (body["pValue"] < 0.05) is True
        assert "a" in body["featuresDrifted"]
        assert drift_status(c)["correction"] == "fdr"


def test_categorical_feature_uses_chi_squared(tmp_path):
    rng = np.random.default_rng(11)
    ref = np.column_stack([rng.normal(size=3000), rng.choice(3, size=3000, p=[0.5, 0.3, 0.2])])
    np.save(tmp_path / "ref.npy", ref)
    with drift_service(reference=str(tmp_path / "ref.npy"), feature_names=["x", "colour"],
                       categorical={"1": 3}, window_size=300, max_age_seconds=0) as c:
        same = np.column_stack([rng.normal(size=300), rng.choice(3, size=300, p=[0.5, 0.3, 0.2])])
        body = feed(c, same, batch=50)[-1].json()["drift"]
        assert body["features"]["colour"]["test"] == "chi2" and body["features"]["x"]["test"] == "ks"
        counts = np.array([[np.sum(ref[:, 1] == k) for k in range(3)], [np.sum(same[:, 1] == k) for k in range(3)]])
        chi2, p, _, _ = chi2_contingency(counts)
        assert body["features"]["colour"]["pValue"] == pytest.approx(p, rel=1e-4)
        assert body["features"]["colour"]["distance"] == pytest.approx(chi2, rel=1e-4)
        assert body["detected"] is False

        moved = np.column_stack([rng.normal(size=300), rng.choice(3, size=300, p=[0.2, 0.3, 0.5])])
        body = feed(c, moved, batch=50)[-1].json()["drift"]
        assert body["detected"] is True and body["featuresDrifted"] == ["colour"]
        assert drift_status(c)["statistic"] == "ks" and drift_status(c)["tests"] == ["ks", "chi2"]


# -- windows --------------------------------------------------------------------------------------

def test_tumbling_and_sliding_windows(ref_csv):
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(100, 3))
    with drift_service(reference=ref_csv, window_size=50, window_mode="sliding", window_step=10,
                       max_age_seconds=0) as c:
        codes = [r.status_code for r in feed(c, rows, batch=5)]
        # first check when the window is first full (50), then every 10 instances
        assert [i for i, code in enumerate(codes) if code == 200] == [9, 11, 13, 15, 17, 19]
        st = drift_status(c)
        assert st["windows"] == 6 and st["fill"] == 50 and st["mode"] == "sliding" and st["step"] == 10
        last = np.concatenate([rows[50:]])  # the last check saw the last 50 instances
        assert st["features"]["a"]["pValue"] == pytest.approx(ks_2samp(REF[:, 0], last[:, 0], method="asymp").pvalue, rel=1e-4)
    with drift_service(reference=ref_csv, window_size=50, max_age_seconds=0) as c:
        codes = [r.status_code for r in feed(c, rows, batch=5)]
        assert [i for i, code in enumerate(codes) if code == 200] == [9, 19]
        # a batch crossing a window boundary is split: 30 + 40 rows -> one window of 50, 20 left
        feed(c, rows[:30], batch=30)
        r = send(c, rows[30:70])
        assert r.status_code == 200 and r.json()["drift"]["checkedInstances"] == 50
        st = drift_status(c)
        assert st["windows"] == 3 and st["fill"] == 20 and st["instances"] == 170
        assert metric_value(metrics_text(c), "vigil_drift_window_fill_ratio") == pytest.approx(20 / 50)


def test_max_age_checks_a_quiet_stream(ref_csv):
    rng = np.random.default_rng(9)
    with drift_service(reference=ref_csv, window_size=1000, max_age_seconds=0.5) as c:
        feed(c, rng.normal(size=(20, 3)), batch=10)
        time.sleep(1.0)  # older than maxAge, but fewer than the 30-instance minimum: keeps waiting
        st = drift_status(c)
        assert st["windows"] == 0 and st["fill"] == 20 and st["ageSeconds"] >= 0.5
        feed(c, rng.normal(size=(20, 3)) + 2.0, batch=20)  # one event: the check cannot split it
        st = wait_until(lambda: (s := drift_status(c))["windows"] == 1 and s, timeout=5, what="maxAge check")
        assert st["trigger"] == "max_age" and st["fill"] == 0 and st["detected"] is True
        text = metrics_text(c)
        assert metric_value(text, "vigil_drift_checks_total", trigger="max_age", result="drift") == 1


# -- the edge -------------------------------------------------------------------------------------

def test_bad_events_are_rejected_and_the_window_is_untouched(ref_csv, monkeypatch):
    monkeypatch.setenv("VIGIL_MAX_BODY_BYTES", "20000")  # the one body limit, read when the app is built
    with drift_service(reference=ref_csv, window_size=100, max_age_seconds=0) as c:
        assert send(c, np.zeros((7, 3))).status_code == 202
        good_headers, good_body = event(np.zeros((1, 3)))
        bad = {
            "feature_count": send(c, np.zeros((2, 4))),
            "non_numeric": send(c, body={"instances": [[1, "x", 3]]}),
            "non_finite": c.post("/", headers=good_headers, content=good_body.replace(b"0.0]]", b"Infinity]]")),
            "bad_shape": send(c, body={"instances": [[1, 2, 3], [1, 2]]}),
            "bad_body": send(c, body={"rows": [[1, 2, 3]]}),
            "too_large": send(c, np.zeros((2000, 3))),
            "content_type": c.post("/", headers={**good_headers, "content-type": "text/csv"}, content=b"1,2,3"),
            "bad_json": c.post("/", headers=good_headers, content=b"{not json"),
            "unknown_type": send(c, np.zeros((1, 3)), ce_type="com.example.other"),
            "no_cloudevent": c.post("/", headers={"content-type": "application/json"}, content=good_body),
            "v2_shape": send(c, body={"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                                                  "data": [1, 2, 3]}]}),
        }
        for what, r in bad.items():
            assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
            assert r.json()["error"], what
        assert bad["too_large"].status_code == 413 and bad["content_type"].status_code == 415
        assert "4" in bad["feature_count"].json()["error"] and "3" in bad["feature_count"].json()["error"]
        status = c.get("/status").json()
        assert status["drift"]["fill"] == 7 and status["drift"]["instances"] == 7
        assert status["events"]["rejected"] == len(bad)
        text = metrics_text(c)
        assert metric_value(text, "vigil_events_rejected_total") == len(bad)
        assert metric_value(text, "vigil_events_rejected_total", reason="feature_count") == 1
        # and the service keeps working: the window completes with exactly the good rows
        rng = np.random.default_rng(1)
        rest = rng.normal(size=(93, 3))
        r = feed(c, rest, batch=93)[-1]
        assert r.status_code == 200 and r.json()["drift"]["checkedInstances"] == 100
        window = np.vstack([np.zeros((7, 3)), rest])
        assert r.json()["drift"]["features"]["b"]["pValue"] == pytest.approx(
            ks_2samp(REF[:, 1], window[:, 1], method="asymp").pvalue, rel=1e-4)


def test_event_types_bodies_single_rows_and_batches(ref_csv):
    with drift_service(reference=ref_csv, window_size=1000, max_age_seconds=0) as c:
        sent = 0
        for ce_type in (REQUEST, "org.kubeflow.serving.inference.request", "io.seldon.serving.inference.request"):
            for v2 in (False, True):
                assert send(c, [0.1, 0.2, 0.3], ce_type=ce_type, v2=v2).status_code == 202  # one row
                assert send(c, np.ones((4, 3)), ce_type=ce_type, v2=v2).status_code == 202  # a batch
                sent += 5
        # V1 single instance as a flat list, Seldon's {"data": {"ndarray": ...}}, V2 one tensor per feature
        assert send(c, body={"instances": [1, 2, 3]}).status_code == 202
        assert send(c, body={"data": {"ndarray": [[1, 2, 3], [4, 5, 6]]}},
                    ce_type="io.seldon.serving.inference.request").status_code == 202
        per_feature = {"inputs": [{"name": n, "shape": [2], "datatype": "FP32", "data": [1, 2]} for n in FEATURES]}
        assert send(c, body=per_feature).status_code == 202
        sent += 5
        # responses are not this detector's business: acknowledged, not added
        assert send(c, body={"predictions": [1]}, ce_type=RESPONSE).status_code == 204
        assert send(c, body={"outputs": [{"name": "o", "shape": [1], "datatype": "FP64", "data": [1]}]},
                    ce_type="org.kubeflow.serving.inference.response").status_code == 204
        st = c.get("/status").json()
        assert st["drift"]["fill"] == sent and st["drift"]["instances"] == sent
        text = metrics_text(c)
        assert metric_value(text, "vigil_events_received_total", type="request") == 15
        assert metric_value(text, "vigil_events_received_total", type="response") == 2


def test_saved_artifact_is_loaded_with_the_monitors_p_value(tmp_path):
    stat = fit_statistic(REF, p_value=0.2, correction="bonferroni")
    stat.save(str(tmp_path / "drift"))
    assert sorted(p.name for p in (tmp_path / "drift").iterdir()) == ["drift.json", "reference.npy"]
    rng = np.random.default_rng(2)
    window = rng.normal(size=(100, 3))
    with drift_service(artifact=str(tmp_path / "drift"), p_value=0.01, window_size=100, max_age_seconds=0) as c:
        body = feed(c, window, batch=50)[-1].json()["drift"]
        assert body["threshold"] == pytest.approx(0.01 / 3)
        assert body["features"]["a"]["pValue"] == pytest.approx(
            ks_2samp(REF[:, 0], window[:, 0], method="asymp").pvalue, rel=1e-9)
        st = drift_status(c)
        assert st["significance"] == 0.01 and st["referenceSize"] == len(REF) and st["statistic"] == "ks"


@pytest.mark.tensorflow
def test_a_saved_alibi_detect_detector_still_loads(tmp_path):
    """A KSDrift saved by alibi-detect itself (e.g. made for Seldon's server) is served as it was."""
    from alibi_detect.cd import KSDrift
    from alibi_detect.saving import save_detector

    save_detector(KSDrift(REF, p_val=0.2), str(tmp_path / "drift"))
    assert (tmp_path / "drift" / "config.toml").exists()
    window = np.random.default_rng(2).normal(size=(100, 3))
    with drift_service(artifact=str(tmp_path / "drift"), p_value=0.01, window_size=100, max_age_seconds=0) as c:
        body = feed(c, window, batch=50)[-1].json()["drift"]
        assert body["threshold"] == pytest.approx(0.01 / 3)
        assert body["features"]["b"]["pValue"] == pytest.approx(
            ks_2samp(REF[:, 1], window[:, 1], method="asymp").pvalue, abs=1e-6)
        st = drift_status(c)
        assert st["statistic"] == "KSDrift" and st["significance"] == 0.01 and st["referenceSize"] == len(REF)


def test_missing_reference_is_reported_not_ready(tmp_path):
    s = DriftSettings(reference=str(tmp_path / "nope.csv"), feature_names=FEATURES)
    with serve_app(create_app(s)) as url:
        r = wait_until(lambda: (x := httpx.get(url + "/readyz")).json().get("status") == "failed" and x, timeout=60,
                       what="load failure")
        assert r.status_code == 503 and "nope.csv" in r.json()["error"]
        assert httpx.get(url + "/healthz").status_code == 200
        assert send(httpx.Client(base_url=url), np.zeros((1, 3))).status_code == 503


def test_metrics_pass_promtool(ref_csv, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing (Debian package prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    with drift_service(reference=ref_csv, window_size=50, max_age_seconds=0) as c:
        feed(c, np.random.default_rng(0).normal(size=(60, 3)), batch=10)
        send(c, np.zeros((1, 4)))  # a rejection series too
        text = metrics_text(c)
    assert "vigil_drift_p_value{" in text and "vigil_events_rejected_total{" in text
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


# -- crash and restart ----------------------------------------------------------------------------

def _start(env: dict, port: int) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix="vigil-drift-", suffix=".log", delete=False)
    proc = subprocess.Popen(serve_command("drift", port), env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log.name  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"drift exited {proc.returncode}: {Path(log.name).read_text()[-3000:]}")
        try:
            return httpx.get(url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=90, what="drift subprocess ready")
    return proc


def test_sigkill_mid_window_then_restart_restores_the_window(ref_csv, tmp_path):
    env = {"VIGIL_DRIFT_REFERENCE": ref_csv, "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES),
           "VIGIL_DRIFT_WINDOW_SIZE": "100", "VIGIL_DRIFT_STATE_DIR": str(tmp_path / "state"),
           "VIGIL_DRIFT_MAX_AGE_SECONDS": "0", "VIGIL_DRIFT_MONITOR": "crash", "VIGIL_DRIFT_NAMESPACE": "ns"}
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(230, 3))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(env, port)
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            feed(c, rows[:100], batch=25)  # one full window checked (and snapshotted)
            feed(c, rows[100:163], batch=7)  # 63 instances of the next window, only in the append log
            before = drift_status(c)
            assert before["windows"] == 1 and before["fill"] == 63
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = _start(env, port)
        with httpx.Client(base_url=url, timeout=10) as c:
            after = drift_status(c)
            assert after["fill"] == 63 and after["windows"] == 1 and after["instances"] == 163
            assert after["lastCheck"] == before["lastCheck"] and after["features"] == before["features"]
            assert after["persisted"] is True
            r = feed(c, rows[163:200], batch=37)[-1]
            assert r.status_code == 200
            checked = r.json()["drift"]
            expected = ks_2samp(REF[:, 2], rows[100:200, 2], method="asymp").pvalue  # exactly the second window's rows
            assert checked["features"]["c"]["pValue"] == pytest.approx(expected, rel=1e-4)
            assert checked["checkedInstances"] == 100
            feed(c, rows[200:230], batch=30)
            assert drift_status(c)["windows"] == 2 and drift_status(c)["fill"] == 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_clean_shutdown_snapshots_and_sliding_window_restores(ref_csv, tmp_path):
    rows = np.random.default_rng(8).normal(size=(75, 3))
    opts = dict(reference=ref_csv, window_size=50, window_mode="sliding", window_step=20, max_age_seconds=0,
                state_dir=str(tmp_path / "state"))
    with drift_service(**opts) as c:
        feed(c, rows[:65], batch=13)  # full at 52 (one check), 13 since
        before = drift_status(c)
        assert before["windows"] == 1 and before["fill"] == 50
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["history.jsonl", "meta-2.json", "window-2.log",
                                                                     "window-2.npy"]
    with drift_service(**opts) as c:
        assert drift_status(c)["fill"] == 50 and drift_status(c)["windows"] == 1
        r = send(c, rows[65:72])  # 13 + 7 = 20 since the last check: due
        assert r.status_code == 200
        expected = ks_2samp(REF[:, 0], rows[22:72, 0], method="asymp").pvalue  # the last 50 across the restart
        assert r.json()["drift"]["features"]["a"]["pValue"] == pytest.approx(expected, rel=1e-4)


# -- the window and its checkpoint on their own ----------------------------------------------------

def test_window_ring_and_checkpoint_log(tmp_path):
    w = DriftWindow(size=5, n_features=2, mode="sliding", step=2)
    rows = np.arange(24, dtype=float).reshape(12, 2)
    assert w.add(rows[:4], 1.0) == []
    due = w.add(rows[4:7], 2.0)  # full at 5 rows, 7 seen: one check of the last 5
    assert len(due) == 1 and np.array_equal(due[0], rows[2:7])
    assert w.add(rows[7:8], 3.0) == []
    due = w.add(rows[8:9], 4.0)
    assert np.array_equal(due[0], rows[4:9])

    t = DriftWindow(size=4, n_features=2)
    due = t.add(rows[:10], 5.0)  # two full windows and 2 left over
    assert [d.tolist() for d in due] == [rows[:4].tolist(), rows[4:8].tolist()] and t.fill == 2
    assert t.due(100.0, 1.0) is None  # under the minimum of instances for an age check
    assert np.array_equal(t.contents(), rows[8:10])

    store = WindowStore(str(tmp_path), 2)
    win = DriftWindow(size=4, n_features=2)
    assert store.restore(win) == ({}, [])
    store.append(rows[:3], 10.0)
    win.add(rows[:3], 10.0)
    store.snapshot(win, {"windows": 7})
    store.append(rows[3:5], 11.0)  # completes a window during replay
    store.append(rows[5:6], 12.0)
    store.close()
    with open(tmp_path / f"window-{store.gen}.log", "ab") as f:
        f.write(b"\x00" * 20)  # a torn record (process killed mid-write)
    again = DriftWindow(size=4, n_features=2)
    store2 = WindowStore(str(tmp_path), 2)
    extra, due = store2.restore(again)
    assert extra == {"windows": 7}
    assert len(due) == 1 and np.array_equal(due[0], rows[:4])
    assert np.array_equal(again.contents(), rows[4:6]) and again.seen == 6 and again.pending_since == 11.0
    store2.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta-1.json", "window-1.log", "window-1.npy"]


def test_snapshots_never_rename_over_a_file_and_skip_an_empty_window(tmp_path, monkeypatch):
    """A rename over an existing file makes ext4 flush the new file first (blocking the event loop
    at every check); an empty window (a tumbling one right after its check) writes no rows file.
    An older checkpoint's single ``meta.json`` still restores."""
    from vigil_detectors.drift import window as window_mod

    real = os.replace

    def replace(src, dst):
        assert not os.path.exists(dst), f"rename over {dst}"
        real(src, dst)

    monkeypatch.setattr(window_mod.os, "replace", replace)
    rows = np.arange(12, dtype=float).reshape(6, 2)
    store, win = WindowStore(str(tmp_path), 2), DriftWindow(size=4, n_features=2)
    store.restore(win)
    for i in range(3):
        store.append(rows[2 * i:2 * i + 2], float(i))
        assert len(win.add(rows[2 * i:2 * i + 2], float(i))) == (i == 1)
        store.snapshot(win, {"windows": i})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta-3.json", "window-3.log", "window-3.npy"]
    store.append(rows[:2], 5.0)
    win.add(rows[:2], 5.0)  # full: checked, empty again
    store.snapshot(win, {"windows": 4})
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta-4.json", "window-4.log"]
    again = DriftWindow(size=4, n_features=2)
    assert WindowStore(str(tmp_path), 2).restore(again)[0] == {"windows": 4} and again.fill == 0
    monkeypatch.setattr(window_mod.os, "replace", real)
    # an older version's checkpoint: meta.json naming its generation
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    np.save(legacy / "window-5.npy", rows[:3])
    meta = {"version": 1, "gen": 5, "nFeatures": 2, "extra": {"windows": 9},
            "window": {"size": 4, "mode": "tumbling", "fill": 3, "sinceCheck": 3, "seen": 3}}
    (legacy / "meta.json").write_text(json.dumps(meta))
    old = DriftWindow(size=4, n_features=2)
    store3 = WindowStore(str(legacy), 2)
    assert store3.restore(old)[0] == {"windows": 9} and np.array_equal(old.contents(), rows[:3])
    store3.snapshot(old, {"windows": 9})
    store3.close()
    assert sorted(p.name for p in legacy.iterdir()) == ["meta-6.json", "window-6.log", "window-6.npy"]


def test_load_table_formats_and_errors(tmp_path):
    from vigil.data import DataError, load_table

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.5], "b": [4, 5, 6], "label": ["x", "y", "z"]})
    frame.to_csv(tmp_path / "h.csv", index=False)
    frame[["a", "b"]].to_csv(tmp_path / "n.csv", index=False, header=False)
    frame.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", frame[["a", "b"]].to_numpy(dtype=float))
    want = frame[["a", "b"]].to_numpy(dtype=float)
    assert np.array_equal(load_table(tmp_path / "h.csv", ["b", "a"]), want[:, ::-1])  # by name, in order
    assert np.array_equal(load_table(tmp_path / "n.csv", ["a", "b"]), want)  # no header: by position
    assert np.array_equal(load_table(tmp_path / "t.parquet", ["a", "b"]), want)
    assert np.array_equal(load_table(f"file://{tmp_path / 't.npy'}", ["a", "b"]), want)
    assert load_table(tmp_path / "h.csv", ["a", "b"]).flags.c_contiguous
    pd.DataFrame({"a": [1.0, None]}).to_csv(tmp_path / "nan.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    for path, names, message in [
        ("h.csv", ["a", "c"], "missing column(s) c"),
        ("n.csv", ["a", "b", "c"], "has 2 columns but 3 features"),
        ("nope.csv", ["a"], "not found"),
        ("h.csv", ["label"], "non-numeric values in column(s) label"),
        ("t.npy", ["a"], "has 2 columns but 1 features"),
        ("nan.csv", ["a"], "missing or non-finite"),
        ("empty.csv", ["a"], "empty"),
        ("h.csv.json", None, "not found"),
    ]:
        with pytest.raises(DataError, match=re.escape(message)):
            load_table(tmp_path / path, names)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unknown reference data format"):
        load_table(tmp_path / "x.json")
