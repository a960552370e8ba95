"""Service logs: `vigil serve` configures logging for every service (DESIGN §11).

A real drift service process completes a drifted window; its INFO line must be in its
stderr, from the logger ``vigil.drift``, one line per record; with ``--log-format json``
every line is one JSON object. Its ``/metrics`` carries the standard process and GC
collectors. The formatters are also checked on a traceback (still one line).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent

from tests.servers import free_port, serve_command, wait_until
from vigil import logs
from vigil.events import REQUEST

FEATURES = ["a", "b", "c"]
#: TensorFlow's C++ runtime (alibi-detect may load it) writes to fd 2 itself, past Python's logging.
NATIVE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[EWIF]\d{4} \d\d:\d\d:\d\d)")


@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "reference.csv"
    pd.DataFrame(np.random.default_rng(1).normal(size=(1000, 3)), columns=FEATURES).to_csv(path, index=False)
    return str(path)


def run_drift(ref_csv: str, tmp_path, *extra: str) -> tuple[str, str]:
    """Serve drift as a process, complete one drifted window; return (stderr, /metrics text)."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "VIGIL_DRIFT_REFERENCE": ref_csv,
           "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_DRIFT_WINDOW_SIZE": "100",
           "VIGIL_DRIFT_MAX_AGE_SECONDS": "0", "VIGIL_DRIFT_STATE_DIR": str(tmp_path / "state")}
    err_path = tmp_path / f"stderr-{port}.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([*serve_command("drift", port), *extra], env=env, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            assert proc.poll() is None, err_path.read_text()
            try:
                return httpx.get(base + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=90, interval=0.1, what="drift ready")
        rows = np.random.default_rng(2).normal(size=(100, 3)) + 3.0  # shifted: drift
        msg = ce_http.to_binary_event(CloudEvent(
            attributes={"type": REQUEST, "source": "/test", "id": str(uuid.uuid4()),
                        "datacontenttype": "application/json"}, data={"instances": rows.tolist()}))
        assert httpx.post(base + "/", headers=msg.headers, content=msg.body, timeout=30).status_code in (200, 202)
        wait_until(lambda: httpx.get(base + "/status").json()["drift"]["windows"] == 1, timeout=30,
                   what="a checked window")
        metrics = httpx.get(base + "/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    return "\n".join(line for line in err_path.read_text().splitlines() if not NATIVE.match(line)), metrics


def test_text_logs_carry_the_drift_line_and_metrics_the_process_collectors(ref_csv, tmp_path):
    stderr, metrics = run_drift(ref_csv, tmp_path)
    lines = stderr.splitlines()
    drift = [line for line in lines if " INFO vigil.drift: drift detected" in line]
    assert len(drift) == 1, stderr
    assert any(" INFO uvicorn.error: " in line for line in lines), stderr  # uvicorn through the same config
    assert all(line[:4].isdigit() and line[23:24] == "Z" for line in lines), stderr  # one record per line
    for family in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_gc_collections_total"):
        assert f"\n{family}" in metrics, family


def test_json_logs_are_one_object_per_line(ref_csv, tmp_path):
    stderr, _ = run_drift(ref_csv, tmp_path, "--log-format", "json", "--log-level", "info")
    records = [json.loads(line) for line in stderr.splitlines()]
    assert records and all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    drift = [r for r in records if r["logger"] == "vigil.drift" and r["message"].startswith("drift detected")]
    assert len(drift) == 1 and drift[0]["level"] == "INFO", stderr


def test_warning_level_hides_info(ref_csv, tmp_path):
    stderr, _ = run_drift(ref_csv, tmp_path, "--log-level", "warning")
    assert "drift detected" not in stderr


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_a_traceback_stays_in_its_record(fmt):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("info", fmt, stream)
    try:
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            logging.getLogger("vigil.test").exception("it failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.captureWarnings(False)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "it failed" in lines[0] and "line two" in lines[0]
    if fmt == "json":
        assert "ValueError" in json.loads(lines[0])["exception"]


def test_log_echo_passes_on_only_warnings_and_errors(tmp_path):
    """`vigil up` echoes its components' WARNING+ records (text and JSON) to the terminal, named
    by component; INFO, TensorFlow's C++ lines and text already in the file before start are not."""
    from vigil.logecho import LogEcho

    (tmp_path / "drift.log").write_text("2026-01-01T00:00:00.000Z ERROR vigil.drift: old, before start\n")
    said: list[str] = []
    echo = LogEcho(tmp_path, ["drift", "logger"], said.append)
    with open(tmp_path / "drift.log", "a") as f:
        f.write("2026-01-01T00:00:01.000Z INFO vigil.drift: fitted\n"
                "W0000 00:00:1700000000.1 12 cuda_executor.cc:1] could not open file\n"
                "2026-01-01T00:00:02.000Z WARNING vigil.drift: window log torn\n"
                "2026-01-01T00:00:03.000Z ERROR vigil.dr")  # a record still being written
    (tmp_path / "logger.log").write_text(
        '{"time": "t", "level": "ERROR", "logger": "vigil.logger", "message": "sink down"}\n'
        '{"time": "t", "level": "INFO", "logger": "vigil.logger", "message": "ok"}\n')
    echo.poll()
    assert said == ["  [drift] 2026-01-01T00:00:02.000Z WARNING vigil.drift: window log torn",
                    '  [logger] {"time": "t", "level": "ERROR", "logger": "vigil.logger", "message": "sink down"}']
    with open(tmp_path / "drift.log", "a") as f:
        f.write("ift: boom\n")
    echo.poll()
    assert said[-1] == "  [drift] 2026-01-01T00:00:03.000Z ERROR vigil.drift: boom"
    assert len(said) == 3
