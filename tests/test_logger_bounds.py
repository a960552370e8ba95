"""The logger's inference path and memory under faults (DESIGN §11), with real servers.

- an upstream that drops every pooled connection without answering: the logger retries
  once on a fresh connection, so each client gets its 200 (no 502);
- sinks that never answer and large bodies: each sink's queue is bounded by bytes
  (``queue_bytes`` drops) and the logger process's RSS grows by at most queueBytes + 100 MB;
- an event larger than the sinks' body limit is dropped at the logger (``too_large``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import pytest
from fastapi import FastAPI, Request

from tests.servers import EventSink, metric_value, serve_app, serve_component, wait_until
from vigil.logger.app import create_app
from vigil.logger.settings import LoggerSettings

PREDICT = "/v1/models/m:predict"
ANSWER = b'{"predictions": [0]}'


class DroppingUpstream:
    """Answers the first request on each connection; at the second it closes without a byte."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        ready = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
            self.connections += 1
            served = 0
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    await reader.readexactly(length)
                    if served:
                        break  # a pooled connection that dies before answering
                    served += 1
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(ANSWER), ANSWER))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        async def start():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_dead_pooled_connection_is_retried_on_a_fresh_one():
    upstream = DroppingUpstream()
    try:
        app = create_app(LoggerSettings(upstream=upstream.url, ready_requires_upstream=False))
        with serve_app(app) as url, httpx.Client(timeout=10) as client:
            statuses = [client.post(url + PREDICT, json={"instances": [[1, 2]]}).status_code for _ in range(20)]
            text = client.get(url + "/metrics").text
    finally:
        upstream.close()
    assert statuses == [200] * 20
    assert metric_value(text, "vigil_logger_upstream_retries_total") >= 10
    assert metric_value(text, "vigil_logger_requests_total", code="502") is None


def _stub_upstream(answer: bytes = ANSWER) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/models/m:predict")
    async def predict(request: Request):
        await request.body()
        from fastapi.responses import Response
        return Response(answer, media_type="application/json")

    return app


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_queues_are_bounded_by_bytes_with_sinks_stopped():
    # A "stopped" sink: a socket that listens but never accepts, so deliveries hang until timeout.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(0)
    hole = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
    queue_bytes = 64 * 1024 * 1024
    sinks = [{"name": f"s{i}", "url": hole, "types": ["request", "response"]} for i in range(2)]
    body = b'{"instances": [' + b",".join([b"[1.2345678, 2.3456789, 3.4567891, 4.5678912]"] * 45_000) + b"]}"
    assert len(body) > 2_000_000
    try:
        with serve_app(_stub_upstream()) as upstream, \
                serve_component("logger", {"VIGIL_LOGGER_UPSTREAM": upstream, "VIGIL_LOGGER_SINKS": json.dumps(sinks),
                                           "VIGIL_LOGGER_READY_REQUIRES_UPSTREAM": "false",
                                           "VIGIL_LOGGER_SINK_TIMEOUT_SECONDS": "60",
                                           "VIGIL_LOGGER_QUEUE_BYTES": str(queue_bytes)}) as url:
            with httpx.Client(timeout=30) as client:
                for _ in range(3):  # warm up: imports, buffers
                    client.post(url + PREDICT, content=b'{"instances": [[1, 2, 3, 4]]}',
                                headers={"content-type": "application/json"})
                before = _rss_bytes(url.pid)
                for _ in range(150):
                    r = client.post(url + PREDICT, content=body, headers={"content-type": "application/json"})
                    assert r.status_code == 200
                after = _rss_bytes(url.pid)
                text = client.get(url + "/metrics").text
                status = client.get(url + "/status").json()["logger"]["sinks"]
    finally:
        black_hole.close()
    growth = after - before
    print(f"logger RSS {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB (+{growth / 2**20:.0f} MB), "
          f"queue_bytes drops {metric_value(text, 'vigil_logger_events_dropped_total', reason='queue_bytes')}")
    for name in ("s0", "s1"):
        assert metric_value(text, "vigil_logger_events_dropped_total", sink=name, reason="queue_bytes") >= 100
        assert status[name]["queueBytes"] <= queue_bytes
    assert growth <= queue_bytes + 100 * 2**20, f"RSS grew by {growth / 2**20:.0f} MB"


def test_an_event_over_the_sink_limit_is_dropped_as_too_large(monkeypatch):
    monkeypatch.setenv("VIGIL_MAX_BODY_BYTES", "100000")
    big_answer = json.dumps({"predictions": [0] * 60_000}).encode()
    sink = EventSink()
    with serve_app(sink.app) as sink_url, serve_app(_stub_upstream(big_answer)) as upstream:
        app = create_app(LoggerSettings(upstream=upstream, ready_requires_upstream=False,
                                        sinks=[{"name": "s", "url": sink_url, "types": ["request", "response"]}]))
        with serve_app(app) as url:
            r = httpx.post(url + PREDICT, json={"instances": [[1, 2, 3, 4]]})
            assert r.status_code == 200 and len(r.content) == len(big_answer)  # the client gets it all
            sink.wait_for(1)
            text = wait_until(lambda: (t := httpx.get(url + "/metrics").text)
                              and metric_value(t, "vigil_logger_events_dropped_total", reason="too_large") == 1 and t,
                              what="too_large drop")
    assert [e.type for e in sink.snapshot()] == ["dev.vigil.inference.request"]
    assert metric_value(text, "vigil_logger_events_sent_total", sink="s") == 1


# -- the spec fields -----------------------------------------------------------------------------------

def _plan_logger(tmp_path, logger_block: dict, metrics: dict | None = None):
    from vigil.local import local_plan
    from vigil.spec import monitor_from_dict

    spec = {"model": {"storageUri": "model.joblib"}, "schema": {"featureNames": ["a", "b"]},
            "reference": {"storageUri": "ref.csv"}, "logger": logger_block,
            "detectors": {"metrics": metrics} if metrics is not None else {}}
    monitor = monitor_from_dict({"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
                                 "metadata": {"name": "m1"}, "spec": spec})
    plan, _ = local_plan(monitor, tmp_path, tmp_path / "work", 18080)
    return plan.get("logger").settings


def test_logger_spec_fields_reach_its_settings(tmp_path):
    s = _plan_logger(tmp_path, {})
    assert (s.queue_bytes, s.upstream_timeout_seconds, s.task, s.classes) == (64 * 2**20, 30.0, None, None)
    s = _plan_logger(tmp_path, {"queueBytes": "1Mi", "upstreamTimeout": "5s"},
                     {"task": "classification", "classes": ["x", "y"]})
    assert (s.queue_bytes, s.upstream_timeout_seconds, s.task, s.classes) == (2**20, 5.0, "classification", ["x", "y"])
    assert _plan_logger(tmp_path, {"queueBytes": 5000}).queue_bytes == 5000


@pytest.mark.parametrize("block, field", [({"queueBytes": "lots"}, "queueBytes"), ({"queueBytes": 10}, "queueBytes"),
                                          ({"upstreamTimeout": "soon"}, "upstreamTimeout")])
def test_bad_logger_spec_fields_name_the_field(tmp_path, block, field):
    from vigil.spec import SpecError

    with pytest.raises(SpecError) as exc:
        _plan_logger(tmp_path, block)
    assert f"spec.logger.{field}" in str(exc.value)
