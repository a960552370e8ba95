"""The request logger over real HTTP: client -> logger -> model server on loopback, with
real CloudEvents sinks. Inference ids, binary-mode events, feedback, modes and
sampling, and sinks that are down, hanging or slow (replies unaffected, drops counted,
queues bounded)."""

from __future__ import annotations

import socket
import time
import uuid

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.servers import EventSink, free_port, metric_value, serve_app, wait_until
from vigil.events import FEEDBACK, REQUEST, RESPONSE, v2_request
from vigil.logger.app import create_app
from vigil.logger.settings import LoggerSettings
from vigil.modelserver.app import create_app as model_app
from vigil.modelserver.settings import ModelServerSettings

X, Y = load_iris(return_X_y=True)
INFER = "/v2/models/iris/infer"
PREDICT = "/v1/models/iris:predict"


@pytest.fixture(scope="module")
def model_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, Y), path)
    with serve_app(model_app(ModelServerSettings(uri=str(path), name="iris"))) as url:
        yield url


@pytest.fixture
def sink():
    s = EventSink()
    with serve_app(s.app) as url:
        s.url = url
        yield s


def logger(upstream: str, sinks=(), **kw):
    """Serve a logger app; `sinks` are (name, url, types) triples."""
    settings = LoggerSettings(upstream=upstream, monitor="iris-mon", namespace="prod",
                              sinks=[{"name": n, "url": u, "types": list(t)} for n, u, t in sinks], **kw)
    app = create_app(settings)
    return app, serve_app(app)


def metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics").text


def test_inference_id_and_unchanged_answer(model_url, sink):
    app, server = logger(model_url, [("all", sink.url, ("request", "response"))])
    body = v2_request(X[:3])
    with server as url, httpx.Client() as c:
        direct = c.post(model_url + INFER, json=body)
        r1 = c.post(url + INFER, json=body, headers={"ce-id": "ce-123", "x-request-id": "xr-1"})
        r2 = c.post(url + INFER, json=body, headers={"x-request-id": "xr-456"})
        r3 = c.post(url + INFER, json=body)
        r4 = c.post(url + PREDICT, json={"instances": X[:2].tolist()}, headers={"x-request-id": "bad id with spaces"})
        assert [r.status_code for r in (r1, r2, r3, r4)] == [200] * 4
        assert r1.content == r2.content == r3.content == direct.content
        assert r1.headers["content-type"] == direct.headers["content-type"]
        assert r1.headers["x-inference-id"] == "ce-123"
        assert r2.headers["x-inference-id"] == "xr-456"
        assert uuid.UUID(r3.headers["x-inference-id"]).version == 4
        assert uuid.UUID(r4.headers["x-inference-id"]).version == 4  # unusable ids are replaced
        assert r4.json() == {"predictions": [0, 0]}
        events = sink.wait_for(8)
    ids = {e.attributes["inferenceid"] for e in events}
    assert ids == {"ce-123", "xr-456", r3.headers["x-inference-id"], r4.headers["x-inference-id"]}


def test_request_and_response_events_in_binary_mode(model_url, sink):
    body = v2_request(X[[0, 120]])
    app, server = logger(model_url, [("all", sink.url + "/events", ("request", "response"))])
    with server as url:
        r = httpx.post(url + INFER, json=body, headers={"x-request-id": "inf-1"})
        events = sink.wait_for(2)
    by_type = {e.type: e for e in events}
    assert set(by_type) == {REQUEST, RESPONSE}
    for e in events:
        h = e.headers
        assert e.path == "/events"
        assert h["ce-specversion"] == "1.0" and h["ce-inferenceid"] == "inf-1"
        assert h["ce-type"] == e.type and h["ce-id"] and h["ce-time"]
        assert h["ce-source"] == "/vigil/prod/iris-mon/logger"
        assert h["content-type"] == "application/json"  # binary mode: the body is the data, not an envelope
        assert (h["ce-modelname"], h["ce-monitorname"], h["ce-namespace"], h["ce-endpoint"]) == (
            "iris", "iris-mon", "prod", INFER)
    assert by_type[REQUEST].headers["ce-id"] != by_type[RESPONSE].headers["ce-id"]
    assert by_type[REQUEST].data == body
    assert by_type[RESPONSE].body == r.content
    assert by_type[RESPONSE].data["outputs"][0]["data"] == [0, 2]


def test_sinks_get_only_their_types_and_feedback(model_url):
    drift, metrics_sink = EventSink(), EventSink()
    with serve_app(drift.app) as d_url, serve_app(metrics_sink.app) as m_url:
        app, server = logger(model_url, [("drift", d_url, ("request",)), ("metrics", m_url, ("response", "feedback"))],
                             model_name="iris-v3")
        with server as url, httpx.Client() as c:
            iid = c.post(url + PREDICT, json={"instances": X[:1].tolist()}).headers["x-inference-id"]
            fb = c.post(url + "/feedback", json={"inferenceId": iid, "truth": 0, "response": [0]})
            assert fb.status_code == 202 and fb.json()["inferenceId"] == iid and fb.json()["queued"] == 1
            fb2 = c.post(url + "/feedback", json={"truth": [1, 2]}, headers={"x-inference-id": "batch-7"})
            assert fb2.status_code == 202 and fb2.headers["x-inference-id"] == "batch-7"
            m_events = metrics_sink.wait_for(3)
            d_events = drift.wait_for(1)
            time.sleep(0.2)
    assert [e.type for e in drift.snapshot()] == [REQUEST]
    assert sorted(e.type for e in metrics_sink.snapshot()) == sorted([RESPONSE, FEEDBACK, FEEDBACK])
    feedback = [e for e in m_events if e.type == FEEDBACK]
    first = next(e for e in feedback if e.attributes["inferenceid"] == iid)
    assert first.data == {"truth": 0, "response": [0]}
    assert first.headers["content-type"] == "application/json"
    assert next(e for e in feedback if e.attributes["inferenceid"] == "batch-7").data == {"truth": [1, 2]}
    assert d_events[0].attributes["modelname"] == "iris-v3"  # the setting wins over the path


@pytest.mark.parametrize("body,headers,reason", [
    (b"not json", {"content-type": "application/json"}, "bad_json"),
    (b'["a list"]', {"content-type": "application/json"}, "bad_body"),
    (b'{"inferenceId": "x"}', {"content-type": "application/json"}, "missing_truth"),
    (b'{"truth": 1}', {"content-type": "application/json"}, "missing_inference_id"),
    (b'{"truth": 1, "inferenceId": 5}', {"content-type": "application/json"}, "missing_inference_id"),
    (b"truth=1", {"content-type": "application/x-www-form-urlencoded"}, "bad_json"),  # curl -d: read as JSON
    (b"truth,1", {"content-type": "text/csv"}, "content_type"),
])
def test_feedback_validation(model_url, sink, body, headers, reason):
    app, server = logger(model_url, [("m", sink.url, ("feedback",))])
    with server as url:
        r = httpx.post(url + "/feedback", content=body, headers=headers)
        assert 400 <= r.status_code < 500 and r.json()["error"]
        assert metric_value(metrics(url), "vigil_events_rejected_total", reason=reason) == 1
        ok = httpx.post(url + "/feedback", json={"inferenceId": "a", "truth": 1})
        assert ok.status_code == 202
        sink.wait_for(1)
    assert len(sink.snapshot()) == 1


@pytest.mark.parametrize("mode,expected", [("request", {REQUEST}), ("response", {RESPONSE}),
                                           ("all", {REQUEST, RESPONSE})])
def test_modes(model_url, sink, mode, expected):
    app, server = logger(model_url, [("s", sink.url, ("request", "response", "feedback"))], mode=mode, sink_workers=1)
    with server as url, httpx.Client() as c:
        for i in range(5):
            assert c.post(url + INFER, json=v2_request(X[i:i + 1])).status_code == 200
        # one worker delivers in order: once the feedback arrived, every earlier event has too
        c.post(url + "/feedback", json={"inferenceId": "barrier", "truth": 0})
        sink.wait_for(1, type=FEEDBACK)
    types = [e.type for e in sink.snapshot() if e.type != FEEDBACK]
    assert set(types) == expected and len(types) == 5 * len(expected)


def test_sample_rate_keeps_pairs_together(model_url, sink):
    app, server = logger(model_url, [("s", sink.url, ("request", "response", "feedback"))], sample_rate=0.3,
                         sink_workers=1)
    n = 200
    with server as url, httpx.Client() as c:
        for i in range(n):
            assert c.post(url + PREDICT, json={"instances": X[i % 150:i % 150 + 1].tolist()}).status_code == 200
        c.post(url + "/feedback", json={"inferenceId": "barrier", "truth": 0})
        sink.wait_for(1, type=FEEDBACK)
        text = metrics(url)
    events = [e for e in sink.snapshot() if e.type != FEEDBACK]
    requests = {e.attributes["inferenceid"] for e in events if e.type == REQUEST}
    responses = {e.attributes["inferenceid"] for e in events if e.type == RESPONSE}
    assert requests == responses  # sampled as a pair, never half
    assert 25 <= len(requests) <= 95, len(requests)  # Binomial(200, 0.3): mean 60, sd 6.5
    assert metric_value(text, "vigil_logger_requests_total", code="200") == n
    assert metric_value(text, "vigil_events_received_total", type="request") == n


def test_sample_rate_zero_emits_nothing_but_feedback(model_url, sink):
    app, server = logger(model_url, [("s", sink.url, ("request", "response", "feedback"))], sample_rate=0.0,
                         sink_workers=1)
    with server as url, httpx.Client() as c:
        for i in range(10):
            assert c.post(url + INFER, json=v2_request(X[i:i + 1])).status_code == 200
        c.post(url + "/feedback", json={"inferenceId": "f", "truth": 0})
        sink.wait_for(1)
    assert [e.type for e in sink.snapshot()] == [FEEDBACK]  # one worker, in order: nothing came before it


def test_non_inference_calls_and_upstream_errors_are_forwarded_without_events(model_url, sink):
    app, server = logger(model_url, [("s", sink.url, ("request", "response"))])
    with server as url, httpx.Client() as c:
        meta = c.get(url + "/v2/models/iris")
        assert meta.status_code == 200 and meta.json() == c.get(model_url + "/v2/models/iris").json()
        assert c.get(url + "/v2/health/ready").status_code == 200
        assert c.get(url + "/v2").json()["name"] == "vigil-modelserver"
        bad = c.post(url + INFER, json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64",
                                                     "data": [1, 2]}]})
        assert bad.status_code == 400 and "features" in bad.json()["error"] and bad.headers["x-inference-id"]
        assert c.post(url + "/v2/models/nope/infer", json=v2_request(X[:1])).status_code == 404
        assert c.post(url + INFER, json=v2_request(X[:1]), headers={"x-request-id": "good"}).status_code == 200
        sink.wait_for(2)
        time.sleep(0.2)
        text = metrics(url)
    assert {e.attributes["inferenceid"] for e in sink.snapshot()} == {"good"}
    assert metric_value(text, "vigil_logger_requests_total", code="400") == 1
    assert metric_value(text, "vigil_logger_requests_total", code="404") == 1


def test_body_too_large_is_413(model_url, sink, monkeypatch):
    monkeypatch.setenv("VIGIL_MAX_BODY_BYTES", "1024")  # the one body limit, read when the app is built
    app, server = logger(model_url, [("s", sink.url, ("request",))])
    with server as url:
        r = httpx.post(url + PREDICT, json={"instances": X.tolist()})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        assert metric_value(metrics(url), "vigil_events_rejected_total", reason="too_large") == 1
        assert httpx.post(url + PREDICT, json={"instances": X[:2].tolist()}).status_code == 200


def test_sink_down_inference_unaffected_drops_counted(model_url):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app, server = logger(model_url, [("dead", dead, ("request", "response"))], retries=2,
                         backoff_initial_seconds=0.001, backoff_max_seconds=0.01, queue_size=1000)
    n = 30
    with server as url, httpx.Client() as c:
        slowest = 0.0
        for i in range(n):
            t = time.perf_counter()
            r = c.post(url + INFER, json=v2_request(X[i:i + 1]))
            slowest = max(slowest, time.perf_counter() - t)
            assert r.status_code == 200
        assert slowest < 1.0, slowest
        wait_until(lambda: metric_value(metrics(url), "vigil_logger_events_dropped_total", sink="dead",
                                        reason="retries_exhausted") == 2 * n, what="all events dropped")
        text = metrics(url)
        status = httpx.get(url + "/status").json()
    assert metric_value(text, "vigil_logger_event_retries_total", sink="dead") == 2 * n * 2
    assert metric_value(text, "vigil_logger_events_sent_total", sink="dead") == 0
    assert metric_value(text, "vigil_logger_events_dropped_total", sink="dead", reason="queue_full") == 0
    assert status["logger"]["eventsDropped"] == 2 * n and status["logger"]["eventsSent"] == 0
    assert status["logger"]["sinks"]["dead"]["dropped"] == {"retries_exhausted": 2 * n}


@pytest.fixture
def blackhole():
    """A sink address that accepts TCP connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def test_hanging_sink_does_not_slow_replies(model_url, blackhole, sink):
    app, server = logger(model_url, [("hang", blackhole, ("request", "response")),
                                     ("ok", sink.url, ("request", "response"))],
                         sink_timeout_seconds=10.0, retries=0, queue_size=10, sink_workers=2,
                         shutdown_grace_seconds=0.2)
    n = 40
    with server as url, httpx.Client() as c:
        times = []
        for i in range(n):
            t = time.perf_counter()
            assert c.post(url + INFER, json=v2_request(X[i:i + 1])).status_code == 200
            times.append(time.perf_counter() - t)
        sink.wait_for(2 * n)  # a hanging sink does not hold back the healthy one
        text = metrics(url)
    assert max(times) < 1.0, max(times)
    assert metric_value(text, "vigil_logger_queue_depth", sink="hang") == 10
    # 80 events: 2 in flight with the two workers, 10 queued, the rest dropped at once
    assert metric_value(text, "vigil_logger_events_dropped_total", sink="hang", reason="queue_full") == 2 * n - 12
    assert metric_value(text, "vigil_logger_events_dropped_total", sink="ok") == 0
    # at shutdown the 12 undelivered events are counted too: none is lost silently
    final = app.state.metrics.exposition()[0].decode()
    dropped = metric_value(final, "vigil_logger_events_dropped_total", sink="hang")
    assert dropped == 2 * n
    assert metric_value(final, "vigil_logger_events_dropped_total", sink="hang", reason="shutdown") == 12


def test_slow_sink_bounded_queue_replies_unaffected(model_url):
    slow = EventSink(delay=1.5)
    n = 12
    with serve_app(slow.app) as s_url:
        app, server = logger(model_url, [("slow", s_url, ("request", "response"))], queue_size=5, sink_workers=1,
                             shutdown_grace_seconds=0.1)
        with server as url, httpx.Client() as c:
            times = []
            for i in range(n):
                t = time.perf_counter()
                assert c.post(url + PREDICT, json={"instances": X[i:i + 1].tolist()}).status_code == 200
                times.append(time.perf_counter() - t)
            text = metrics(url)
            status = httpx.get(url + "/status").json()
    assert max(times) < 1.0, max(times)  # the sink takes 1.5 s per event
    assert metric_value(text, "vigil_logger_queue_depth", sink="slow") == 5
    assert status["logger"]["queueDepth"] == 5
    sent = metric_value(text, "vigil_logger_events_sent_total", sink="slow")
    full = metric_value(text, "vigil_logger_events_dropped_total", sink="slow", reason="queue_full")
    # every event is accounted for: delivered, dropped, queued (5) or with the one worker (1)
    assert full >= 2 * n - 6 - 1 and sent + full + 5 + 1 == 2 * n


def test_retries_then_delivery(model_url):
    flaky = EventSink(fail_first=2)
    with serve_app(flaky.app) as s_url:
        app, server = logger(model_url, [("flaky", s_url, ("request",))], retries=3, backoff_initial_seconds=0.01)
        with server as url:
            httpx.post(url + INFER, json=v2_request(X[:1]), headers={"x-request-id": "r1"})
            events = flaky.wait_for(1)
            text = metrics(url)
    assert events[0].attributes["inferenceid"] == "r1" and flaky.attempts == 3
    assert metric_value(text, "vigil_logger_event_retries_total", sink="flaky") == 2
    assert metric_value(text, "vigil_logger_events_sent_total", sink="flaky") == 1


def test_sink_rejecting_events_is_not_retried(model_url):
    refusing = EventSink(status=400)
    with serve_app(refusing.app) as s_url:
        app, server = logger(model_url, [("no", s_url, ("request",))], retries=3)
        with server as url:
            httpx.post(url + INFER, json=v2_request(X[:1]))
            wait_until(lambda: metric_value(metrics(url), "vigil_logger_events_dropped_total", sink="no",
                                            reason="rejected") == 1, what="rejected drop")
    assert refusing.attempts == 1


def test_upstream_down_is_502_and_not_ready(sink):
    app, server = logger(f"http://127.0.0.1:{free_port()}", [("s", sink.url, ("request",))])
    with server as url:
        r = httpx.post(url + INFER, json=v2_request(X[:1]), headers={"x-request-id": "down-1"})
        assert r.status_code == 502 and "unreachable" in r.json()["error"]
        assert r.headers["x-inference-id"] == "down-1"
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.get(url + "/status").json()["ready"] is False
        text = metrics(url)
    assert metric_value(text, "vigil_logger_requests_total", code="502") == 1
    assert metric_value(text, "vigil_logger_upstream_errors_total", reason="connect") == 1
    assert sink.snapshot() == []


def test_ready_without_upstream_check(sink):
    app, server = logger(f"http://127.0.0.1:{free_port()}", ready_requires_upstream=False)
    with server as url:
        assert httpx.get(url + "/readyz").status_code == 200


def test_metrics_and_status(model_url, sink):
    app, server = logger(model_url, [("s", sink.url, ("request", "response"))])
    with server as url, httpx.Client() as c:
        assert c.get(url + "/readyz").status_code == 200
        for i in range(4):
            c.post(url + INFER, json=v2_request(X[i:i + 1]))
        sink.wait_for(8)
        wait_until(lambda: metric_value(metrics(url), "vigil_logger_events_sent_total", sink="s") == 8)
        text = metrics(url)
        status = c.get(url + "/status").json()
    labels = {"monitor": "iris-mon", "namespace": "prod"}
    assert metric_value(text, "vigil_logger_requests_total", code="200", **labels) == 4
    assert metric_value(text, "vigil_logger_added_latency_seconds_count", **labels) == 4
    assert metric_value(text, "vigil_model_request_duration_seconds_count", **labels) == 4
    assert metric_value(text, "vigil_logger_queue_depth", sink="s") == 0
    assert metric_value(text, "vigil_events_received_total", type="response") == 4
    for reason in ("queue_full", "retries_exhausted", "rejected", "shutdown"):
        assert metric_value(text, "vigil_logger_events_dropped_total", sink="s", reason=reason) == 0
    assert status["component"] == "logger" and status["ready"] is True
    assert status["logger"] | {"sinks": None} == {
        "requests": 4, "eventsSent": 8, "eventsDropped": 0, "queueDepth": 0, "upstream": model_url,
        "mode": "all", "sampleRate": 1.0, "sinks": None}


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("VIGIL_LOGGER_UPSTREAM", "http://127.0.0.1:8081")
    monkeypatch.setenv("VIGIL_LOGGER_SINKS", '[{"name":"drift","url":"http://127.0.0.1:8083","types":["request"]},'
                                            '{"name":"metrics","url":"http://127.0.0.1:8084"}]')
    monkeypatch.setenv("VIGIL_LOGGER_MODE", "response")
    monkeypatch.setenv("VIGIL_LOGGER_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("VIGIL_LOGGER_QUEUE_SIZE", "7")
    s = LoggerSettings()
    assert [x.types for x in s.sinks] == [["request"], ["request", "response", "feedback"]]
    assert (s.mode, s.sample_rate, s.queue_size) == ("response", 0.5, 7)
    monkeypatch.setenv("VIGIL_LOGGER_SINKS", '[{"name":"a","url":"ftp://x"}]')
    with pytest.raises(ValueError, match="http"):
        LoggerSettings()
    monkeypatch.setenv("VIGIL_LOGGER_SINKS", '[{"name":"a","url":"http://x","types":["bogus"]}]')
    with pytest.raises(ValueError):
        LoggerSettings()


def test_concurrent_clients_get_their_own_ids(model_url, sink):
    """Many requests in flight at once: every reply carries its own id and its events match it."""
    import asyncio

    app, server = logger(model_url, [("s", sink.url, ("request", "response"))])
    n = 60

    async def run(url):
        async with httpx.AsyncClient() as c:
            async def one(i):
                r = await c.post(url + INFER, json=v2_request(X[i:i + 1]), headers={"x-request-id": f"c-{i}"})
                return i, r
            return await asyncio.gather(*(one(i) for i in range(n)))

    expected = httpx.post(model_url + INFER, json=v2_request(X[:n])).json()["outputs"][0]["data"]
    with server as url:
        results = asyncio.run(run(url))
        events = sink.wait_for(2 * n)
    for i, r in results:
        assert r.headers["x-inference-id"] == f"c-{i}"
        assert r.json()["outputs"][0]["data"] == [expected[i]]
    by_id = {}
    for e in events:
        by_id.setdefault(e.attributes["inferenceid"], {})[e.type] = e
    for i, r in results:
        pair = by_id[f"c-{i}"]
        assert np.allclose(pair[REQUEST].data["inputs"][0]["data"], X[i])
        assert pair[RESPONSE].body == r.content


@pytest.mark.prometheus
def test_metrics_pass_promtool(model_url, sink):
    import subprocess

    from tests.prom import need

    dead = f"http://127.0.0.1:{free_port()}"
    app, server = logger(model_url, [("s", sink.url, ("request", "response")), ("dead", dead, ("request",))],
                         retries=0)
    with server as url:
        httpx.post(url + INFER, json=v2_request(X[:1]))
        httpx.post(url + "/feedback", content=b"nope", headers={"content-type": "application/json"})
        wait_until(lambda: metric_value(metrics(url), "vigil_logger_events_dropped_total", sink="dead") == 1)
        text = metrics(url)
    r = subprocess.run([need("promtool"), "check", "metrics"], input=text, text=True, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr
