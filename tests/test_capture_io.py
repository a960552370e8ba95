"""The capture writer and reader without servers: queue bounds and drop reasons, a remote
(non-local) fsspec filesystem, bodies that are not UTF-8, what a reader sees mid-write, a
missing pyarrow, and `vigil replay` through a monitor's sinks, against a closed port, and
on a location that does not exist."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import serve_ready
from tests.servers import free_port, wait_until
from vigil.capture.reader import capture_files, iter_records
from vigil.capture.record import CaptureError
from vigil.capture.settings import CaptureSettings
from vigil.capture.writer import CaptureMetrics, CaptureWriter
from vigil.cli import main as vigil
from vigil.events import v2_request
from vigil.telemetry import ServiceMetrics
from vigil_detectors.drift.service import create_app as drift_app
from vigil_detectors.drift.settings import DriftSettings


def writer(uri: str, **kw) -> CaptureWriter:
    max_record_bytes = kw.pop("max_record_bytes", 1 << 20)
    return CaptureWriter(CaptureSettings(uri=uri, **kw), CaptureMetrics(ServiceMetrics("t", "ns")),
                         max_record_bytes=max_record_bytes)


def attrs(i: int, kind: str = "request") -> dict:
    return {"id": str(uuid.uuid4()), "source": "/vigil/ns/t/logger", "type": f"dev.vigil.inference.{kind}",
            "specversion": "1.0", "time": time.time(), "datacontenttype": "application/json",
            "inferenceid": f"inf-{i}", "modelname": "m", "monitorname": "t", "namespace": "ns",
            "endpoint": "/v2/models/m/infer"}


def test_queue_bounds_drop_and_count_without_waiting(tmp_path):
    w = writer(str(tmp_path), queue_size=2, queue_bytes=1024, max_record_bytes=2000)
    assert w.offer("request", attrs(0), b"{}") and w.offer("request", attrs(1), b"{}")
    assert not w.offer("request", attrs(2), b"{}")  # count bound
    w2 = writer(str(tmp_path / "b"), queue_bytes=1024, max_record_bytes=2000)
    assert w2.offer("request", attrs(0), b"x" * 1000)
    assert not w2.offer("request", attrs(1), b"x" * 100)  # byte bound
    assert not w2.offer("request", attrs(2), b"x" * 2001)  # over the edge's body limit
    assert dict(w.dropped) == {"queue_full": 1} and dict(w2.dropped) == {"queue_bytes": 1, "too_large": 1}
    w.stop(0)  # never started: what waits is dropped as shutdown, and counted
    assert dict(w.dropped) == {"queue_full": 1, "shutdown": 2} and w.depth == 0


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_remote_filesystem_and_binary_bodies_round_trip(fmt):
    root = f"memory://cap-{uuid.uuid4().hex}"
    w = writer(root, format=fmt, rotate_seconds=1.0)
    w.start()
    bodies = [json.dumps({"i": i}).encode() for i in range(50)] + [bytes(range(256))]  # the last is not UTF-8
    sent = [attrs(i) for i in range(len(bodies))]
    for a, b in zip(sent, bodies, strict=True):
        assert w.offer("request", a, b)
    w.stop(5)
    records = list(iter_records(root))
    assert [r.data for r in records] == bodies
    assert [r.id for r in records] == [a["id"] for a in sent]
    assert records[0].json() == {"i": 0} and records[0].kind == "request" and records[0].model == "m"
    assert w.written == 51 and not w.dropped and not w.errors
    assert len(capture_files(root)) == 1 and capture_files(root)[0].endswith("." + fmt)


def test_reader_skips_what_a_writer_has_not_finished_and_names_bad_lines(tmp_path):
    w = writer(str(tmp_path / "c"), rotate_seconds=60)
    w.start()
    w.offer("request", attrs(0), b'{"a": 1}')
    wait_until(lambda: w.written == 1, timeout=5, what="the record flushed")
    (path,) = capture_files(str(tmp_path / "c"))
    assert [r.inference_id for r in iter_records(path)] == ["inf-0"]  # readable before rotation
    w.stop(1)
    with open(path, "ab") as f:
        f.write(b'{"time": "2026-')  # a partial last line: what a reader may see mid-write
    assert len(list(iter_records(str(tmp_path / "c")))) == 1
    unfinished = tmp_path / "c" / "capture-20990101T000000Z-000000.parquet"
    unfinished.write_bytes(b"PAR1" + b"\0" * 100)  # no footer yet
    assert len(list(iter_records(str(tmp_path / "c")))) == 1
    bad = tmp_path / "d" / "capture-20260101T000000Z-000001.jsonl"
    bad.parent.mkdir()
    bad.write_bytes(b'{"kind": "request"}\n')
    with pytest.raises(CaptureError, match=r"capture-20260101T000000Z-000001.jsonl:1: not a capture record"):
        list(iter_records(str(bad.parent)))
    with pytest.raises(CaptureError, match="no such capture location"):
        capture_files(str(tmp_path / "nowhere"))


def test_missing_pyarrow_is_a_counted_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    w = writer(str(tmp_path), format="parquet")
    w.start()
    w.offer("request", attrs(0), b"{}")
    wait_until(lambda: w.errors, timeout=5, what="the error counted")
    w.stop(0)
    assert dict(w.errors) == {"unavailable": 1} and w.dropped["write_error"] == 1
    assert "parquet needs pyarrow" in w.last_error and "format: jsonl" in w.last_error
    assert not list(tmp_path.iterdir())


def test_replay_through_a_monitors_sinks_and_clear_failures(tmp_path, capsys):
    ref = tmp_path / "reference.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(500, 2)), columns=["a", "b"]).to_csv(ref, index=False)
    capture = tmp_path / "capture"
    w = writer(str(capture))
    w.start()
    for i in range(30):
        w.offer("request", attrs(i), json.dumps(v2_request(rng.normal(size=(2, 2)))).encode())
        w.offer("response", attrs(i, "response"), b'{"outputs": []}')
    w.stop(5)
    settings = DriftSettings(monitor="t", namespace="ns", feature_names=["a", "b"], reference=str(ref), window_size=100,
                             state_dir=str(tmp_path / "state"))
    with serve_ready(drift_app(settings)) as drift:
        port = int(str(drift.base_url).rsplit(":", 1)[1])
        monitor = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "t"},
                   "spec": {"model": {"storageUri": "model.joblib"}, "schema": {"featureNames": ["a", "b"]},
                            "reference": {"storageUri": str(ref)}, "detectors": {"drift": {}}}}
        (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(monitor))
        # drift is base+3 under vigil up: the monitor's sinks are this service; it takes requests only
        assert vigil(["replay", str(capture), "--monitor", str(tmp_path / "monitor.yaml"),
                      "--base-port", str(port - 3)]) == 0
        out = capsys.readouterr()
        assert "sent 30, failed 0, skipped 30 (no target takes their kind)" in out.out
        assert f"drift http://127.0.0.1:{port}" in out.err
        assert drift.get("/status").json()["drift"]["instances"] == 60
    small = tmp_path / "small"
    w = writer(str(small))
    w.start()
    for i in range(3):
        w.offer("request", attrs(i), b'{"instances": [[1, 2]]}')
    w.stop(5)
    closed = free_port()  # nothing listens: each event is retried, then counted as failed
    assert vigil(["replay", str(small), "--to", f"http://127.0.0.1:{closed}/"]) == 1
    out = capsys.readouterr()
    assert "sent 0, failed 3" in out.out and "3 failed: detector: ConnectError" in out.err
    assert vigil(["replay", str(tmp_path / "nowhere"), "--to", "http://127.0.0.1:9/"]) == 2
    assert "no such capture location" in capsys.readouterr().err
    assert vigil(["replay", str(capture), "--to", "ftp://x"]) == 2


def test_a_location_that_becomes_writable_is_used_after_the_backoff(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    w = writer(str(blocker / "capture"), flush_seconds=0.1)
    w.start()
    w.offer("request", attrs(0), b"{}")
    wait_until(lambda: w.errors, timeout=5, what="the first failure")
    blocker.unlink()  # the location can be written now
    w.offer("request", attrs(1), b"{}")
    wait_until(lambda: w.written == 1, timeout=5, what="the retry after the backoff")
    w.stop(1)
    assert dict(w.errors) == {"open": 1} and dict(w.dropped) == {"write_error": 1}
    assert [r.inference_id for r in iter_records(str(blocker / "capture"))] == ["inf-1"]
