"""The history of window checks (DESIGN §10): the bounded JSONL file, drift's `GET /history`, `vigil status --history`.

The file logic on its own (bound, oldest half dropped, torn last line, NaN), then a real
drift service on loopback with a state dir: each window check is one line with the
verdict and per-feature score/threshold/drifted/pValue equal to what `/status` reported;
``GET /history?limit=N`` gives the last N newest last, a bad limit is a counted 400; the
history survives a restart; and `vigil status --history N -o json` (a real subprocess on
a run file pointing at the service) prints ``{"drift": [...], "quality": []}`` — no
quality detector deployed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.servers import free_port, metric_value
from tests.test_drift import FEATURES, drift_service, drift_status, feed, ref_csv  # noqa: F401  (fixture)
from vigil_detectors.frame.history import FILE_NAME, History


def test_append_and_tail_newest_last(tmp_path):
    h = History(tmp_path / "h.jsonl")
    assert h.tail(5) == []
    for i in range(7):
        h.append({"window": i, "score": np.float64(i / 2), "nan": float("nan"), "arr": np.arange(2)})
    got = h.tail(3)
    assert [c["window"] for c in got] == [4, 5, 6]
    assert got[-1]["score"] == 3.0 and got[-1]["nan"] is None and got[-1]["arr"] == [0, 1]
    assert [c["window"] for c in History(tmp_path / "h.jsonl").tail(100)] == list(range(7))  # reopened


def test_size_bound_drops_the_oldest_half(tmp_path):
    path = tmp_path / "h.jsonl"
    h = History(path, max_bytes=4096)
    for i in range(2000):
        h.append({"window": i, "pad": "x" * 40})
        assert path.stat().st_size <= 4096
    kept = [c["window"] for c in h.tail(10_000)]
    assert kept[-1] == 1999 and kept == list(range(kept[0], 2000))  # contiguous, newest kept
    assert 30 <= len(kept) <= 4096 // 50 + 1  # about half to all of the bound's worth of lines


def test_torn_last_line_is_skipped_and_cut(tmp_path):
    path = tmp_path / "h.jsonl"
    h = History(path)
    h.append({"window": 1})
    with open(path, "ab") as f:
        f.write(b'{"window": 2, "tr')  # a crash mid-append
    assert [c["window"] for c in History(path).tail(5)] == [1]
    h2 = History(path)
    h2.append({"window": 3})
    assert [c["window"] for c in h2.tail(5)] == [1, 3]
    assert path.read_bytes().count(b"\n") == 2


def test_too_small_a_bound_is_refused(tmp_path):
    with pytest.raises(ValueError):
        History(tmp_path / "h.jsonl", max_bytes=10)


def test_drift_history_endpoint_and_cli(ref_csv, tmp_path):  # noqa: F811
    rng = np.random.default_rng(3)
    state = tmp_path / "state"
    with drift_service(reference=ref_csv, window_size=100, state_dir=str(state), max_age_seconds=0) as client:
        statuses = []
        for shift in (0.0, 0.0, 3.0):
            feed(client, rng.normal(size=(100, 3)) + shift, batch=25)
            statuses.append(drift_status(client))
        r = client.get("/history", params={"limit": 2})
        assert r.status_code == 200
        checks = r.json()["checks"]
        assert [c["window"] for c in checks] == [2, 3]
        assert [c["detected"] for c in checks] == [False, True]
        for check, status in zip(checks, statuses[1:], strict=True):
            assert check["time"] == status["lastCheck"] and check["featuresDrifted"] == status["featuresDrifted"]
            for name in FEATURES:
                want = {k: status["features"][name][k] for k in ("test", "score", "threshold", "drifted", "pValue")}
                assert check["features"][name] == want
        assert len(client.get("/history").json()["checks"]) == 3
        for bad in ("0", "-1", "x", "100000"):
            r = client.get("/history", params={"limit": bad})
            assert r.status_code == 400 and r.json()["reason"] == "bad_request", (bad, r.text)
        assert metric_value(client.get("/metrics").text, "vigil_events_rejected_total", reason="bad_request") == 4
        assert client.get("/readyz").status_code == 200  # still serving

        workdir = tmp_path / "run"
        workdir.mkdir()
        url = str(client.base_url)
        (workdir / "run.json").write_text(json.dumps({"monitor": "t", "namespace": "ns", "components": {
            "drift": url, "quality": f"http://127.0.0.1:{free_port()}"}, "endpoints": {}}))
        out = subprocess.run([sys.executable, "-m", "vigil", "status", "--workdir", str(workdir), "--history", "2",
                              "-o", "json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc == {"drift": checks, "quality": []}
        out = subprocess.run([sys.executable, "-m", "vigil", "status", "--workdir", str(workdir), "--history"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "DRIFT HISTORY (3 checks)" in out.stdout and "QUALITY HISTORY  none" in out.stdout
        assert out.stdout.count("window=") == 3 and out.stdout.count(" DRIFT ") == 1
    # a restart keeps the history and appends after it
    with drift_service(reference=ref_csv, window_size=100, state_dir=str(state), max_age_seconds=0) as client:
        feed(client, rng.normal(size=(100, 3)), batch=50)
        assert [c["window"] for c in client.get("/history", params={"limit": 10}).json()["checks"]] == [1, 2, 3, 4]
    assert (state / FILE_NAME).exists()


def test_without_a_state_dir_history_is_empty(ref_csv):  # noqa: F811
    with drift_service(reference=ref_csv, window_size=50, max_age_seconds=0) as client:
        feed(client, np.random.default_rng(1).normal(size=(50, 3)), batch=50)
        assert client.get("/history").json() == {"checks": [], "persisted": False}
