"""`vigil replay --monitor` on a JetStream monitor: captured events published to the monitor's
stream (a real nats-server on loopback) reach a drift detector consuming it, once; a second
replay is held by the server or dropped by the detector, and counts nothing twice."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.natsserver import nats_server
from tests.servers import free_port, serve_component, wait_until
from vigil.capture.settings import CaptureSettings
from vigil.capture.writer import CaptureMetrics, CaptureWriter
from vigil.cli import main as vigil
from vigil.events import v2_request
from vigil.telemetry import ServiceMetrics

FEATURES = ["a", "b"]


def capture(path, rows: list[np.ndarray]) -> None:
    w = CaptureWriter(CaptureSettings(uri=str(path)), CaptureMetrics(ServiceMetrics("t", "default")))
    w.start()
    for i, x in enumerate(rows):
        attrs = {"id": str(uuid.uuid4()), "source": "/vigil/default/t/logger", "type": "dev.vigil.inference.request",
                 "specversion": "1.0", "time": time.time(), "datacontenttype": "application/json",
                 "inferenceid": f"inf-{i}", "modelname": "m", "monitorname": "t", "namespace": "default"}
        assert w.offer("request", attrs, json.dumps(v2_request(x)).encode())
    w.stop(5)
    assert w.written == len(rows)


@pytest.mark.slow
def test_replay_through_a_jetstream_monitor_backfills_drift_once(tmp_path, capsys):
    rng = np.random.default_rng(3)
    ref = tmp_path / "reference.csv"
    pd.DataFrame(rng.normal(size=(500, 2)), columns=FEATURES).to_csv(ref, index=False)
    rows = [rng.normal(size=(int(rng.integers(1, 4)), 2)) for _ in range(40)]
    capture(tmp_path / "capture", rows)
    with nats_server(tmp_path / "nats") as server:
        monitor = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "t"},
                   "spec": {"model": {"storageUri": "model.joblib"}, "schema": {"featureNames": FEATURES},
                            "reference": {"storageUri": str(ref)}, "transport": {"type": "jetstream"},
                            "detectors": {"drift": {"window": {"size": 1000}}}}}
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(monitor))
        # no url in the spec (vigil up runs its own server): replay asks for it
        assert vigil(["replay", str(tmp_path / "capture"), "--monitor", str(tmp_path / "monitor.yaml")]) == 2
        assert "pass --nats URL" in capsys.readouterr().err
        argv = ["replay", str(tmp_path / "capture"), "--monitor", str(tmp_path / "monitor.yaml"), "--nats", server.url]
        assert vigil(argv) == 0
        assert "sent 40, failed 0" in capsys.readouterr().out
        env = {"VIGIL_DRIFT_MONITOR": "t", "VIGIL_DRIFT_NAMESPACE": "default", "VIGIL_DRIFT_REFERENCE": str(ref),
               "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_DRIFT_WINDOW_SIZE": "1000",
               "VIGIL_DRIFT_STATE_DIR": str(tmp_path / "state"), "VIGIL_DRIFT_MAX_AGE_SECONDS": "0",
               "VIGIL_DRIFT_TRANSPORT": json.dumps({"type": "jetstream", "url": server.url, "ack_wait_seconds": 2})}
        with serve_component("drift", env, timeout=90) as url:
            import httpx

            def instances() -> int:
                return httpx.get(url + "/status").json()["drift"]["instances"]

            total = sum(x.shape[0] for x in rows)
            wait_until(lambda: instances() == total, timeout=60, interval=0.2, what="drift backfilled")
            assert vigil(argv) == 0  # again: the stream holds every message id
            assert "sent 40, failed 0, 40 already in the stream" in capsys.readouterr().out
            time.sleep(3)  # past the ack wait: anything delivered again would show
            assert instances() == total
    closed = f"nats://127.0.0.1:{free_port()}"
    assert vigil([*argv[:-1], closed]) == 2
    assert f"cannot publish to NATS at {closed}" in capsys.readouterr().err
