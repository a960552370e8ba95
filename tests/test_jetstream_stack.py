"""`vigil up` on JetStream (DESIGN §13): a local stack whose monitor asks for JetStream without a url
gets its own nats-server (the wheel's), supervised with the components; traffic and feedback flow
logger -> stream -> drift and metrics, and `vigil status` shows the transport's URL."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.prom import free_port_range
from tests.servers import metric_value, wait_until
from tests.test_local_stack import MONITOR, WINDOW, _files, _send, _settle
from vigil.local import RUN_FILE, LocalStack, local_plan
from vigil.spec import load_monitor

pytestmark = pytest.mark.slow


def test_local_stack_on_jetstream_with_traffic_and_feedback(tmp_path):
    x, y = _files(tmp_path)
    (tmp_path / "monitor.yaml").write_text(MONITOR + "  transport: {type: jetstream, partitions: 2}\n")
    monitor = load_monitor(tmp_path / "monitor.yaml")
    plan, placement = local_plan(monitor, tmp_path, tmp_path / "work", free_port_range(6))
    assert placement.nats_url and placement.nats_url.startswith("nats://127.0.0.1:")
    said: list[str] = []
    stack = LocalStack(plan, placement, say=said.append)
    stack.start(timeout=120)
    try:
        assert any(placement.nats_url in line for line in said)  # its URL is printed
        urls = stack.component_urls()
        run = json.loads((stack.workdir / RUN_FILE).read_text())
        assert run["transport"]["url"] == placement.nats_url and run["transport"]["state"] == "Running"
        rng = np.random.default_rng(1)
        idx = rng.integers(0, len(x), 2 * WINDOW)
        rows = x[idx] + rng.normal(0, 0.05, (2 * WINDOW, 4))
        with httpx.Client(timeout=10) as client:
            ids = _send(client, urls, rows, y[idx])
            drift = _settle(client, urls, 2)
            assert drift["detected"] is False and drift["instances"] == 2 * WINDOW
            m = wait_until(lambda: (s := client.get(f"{urls['metrics']}/status").json())["metrics"].get("feedback", 0)
                           >= len(ids) and s, timeout=30, what="metrics joined every feedback")["metrics"]
            assert m["feedback"] == len(ids) and m["accuracy"] > 0.9
            for name in ("drift", "metrics"):
                st = client.get(f"{urls[name]}/status").json()["transport"]
                assert st["connected"] and st["consumer"] == name and st["messages"]["term"] == 0
            text = client.get(f"{urls['logger']}/metrics").text
            assert metric_value(text, "vigil_logger_events_sent_total", sink="jetstream") == 3 * len(ids)
            assert metric_value(text, "vigil_logger_events_dropped_total", sink="jetstream") == 0
            # lag drains to zero once the detectors are through (the logger polls it every 2 s)
            wait_until(lambda: metric_value(client.get(f"{urls['logger']}/metrics").text,
                                            "vigil_transport_pending_messages", consumer="drift") == 0, timeout=20)
        out = subprocess.run([sys.executable, "-m", "vigil", "status", "--workdir", str(stack.workdir), "-o", "json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["transport"]["url"] == placement.nats_url
        nats_proc = stack.nats.proc if stack.nats else None
        assert nats_proc is not None and nats_proc.poll() is None
    finally:
        stack.stop()
    assert nats_proc.poll() is not None  # stopped with the stack
