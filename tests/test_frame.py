"""The detector frame over real HTTP: edge validation, counting, replies and readiness."""

import json
import threading

import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import cloud_event
from tests.servers import metric_value, serve_app, wait_until
from vigil_detectors.frame import Detector, DetectorSettings, create_detector_app


class Recorder(Detector):
    """Records the rows it is handed; loading waits for a gate so readiness can be observed."""

    name = "drift"
    gate = threading.Event()

    def load(self):
        if not self.gate.wait(10):
            raise RuntimeError("artifact missing")
        self.rows = []

    async def process(self, event):
        self.rows.extend(event.instances.tolist())
        return {"rows": event.rows, "inferenceid": event.inference_id}

    def status(self):
        return {"drift": {"rows": len(self.rows)}}


def event(data, type_="dev.vigil.inference.request", **attrs):
    return cloud_event(data, type_, **attrs)


@pytest.fixture
def url(monkeypatch):
    Recorder.gate.clear()
    monkeypatch.setenv("VIGIL_MAX_BODY_BYTES", "4096")  # the one body limit, read when the app is built
    app = create_detector_app(Recorder, DetectorSettings(feature_names=["a", "b"]))
    with serve_app(app) as base:
        yield base


def post(base, msg):
    return httpx.post(base + "/", headers=msg.headers, content=msg.body)


def test_ready_only_after_load_and_events_refused_before(url):
    assert httpx.get(url + "/healthz").status_code == 200
    assert httpx.get(url + "/readyz").status_code == 503
    r = post(url, event({"instances": [[1, 2]]}))
    assert r.status_code == 503 and "not ready" in r.json()["error"]
    Recorder.gate.set()
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, what="ready")


def test_valid_events_and_reply_keeps_id(url):
    Recorder.gate.set()
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, what="ready")
    r = post(url, event({"instances": [[1, 2], [3, 4]]}, id="ev-1", inferenceid="inf-1"))
    assert r.status_code == 200
    assert r.headers["ce-type"] == "dev.vigil.detection.drift"
    assert r.headers["ce-id"] == "ev-1" and r.headers["ce-inferenceid"] == "inf-1"
    assert r.json() == {"rows": 2, "inferenceid": "inf-1"}
    # KServe and Seldon request types, V2 body, structured mode
    v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [5, 6]}]}
    assert post(url, event(v2, "org.kubeflow.serving.inference.request")).status_code == 200
    assert post(url, event({"data": {"ndarray": [[7, 8]]}}, "io.seldon.serving.inference.request")).status_code == 200
    structured = ce_http.to_structured_event(CloudEvent(
        attributes={"type": "dev.vigil.inference.request", "source": "/t", "datacontenttype": "application/json"},
        data={"instances": [9, 10]}))
    assert httpx.post(url + "/", headers=structured.headers, content=structured.body).status_code == 200
    # a kind this detector does not consume is acknowledged, not processed
    assert post(url, event({"outputs": []}, "dev.vigil.inference.response")).status_code == 204
    status = httpx.get(url + "/status").json()
    assert status["drift"]["rows"] == 5 and status["events"]["received"] == 5


@pytest.mark.parametrize("make, code, reason", [
    (lambda: event({"instances": [[1, 2, 3]]}), 400, "feature_count"),
    (lambda: event({"instances": [["x", 2]]}), 400, "non_numeric"),
    (lambda: event({"instances": [[1, float("inf")]]}), 400, "non_numeric"),  # null is a missing value, not a 400
    (lambda: event({"rows": [[1, 2]]}), 400, "bad_body"),
    (lambda: event({"instances": [[1, 2]]}, "com.example.other"), 400, "unknown_type"),
    (lambda: ce_http.HTTPMessage({"content-type": "application/json"}, b'{"instances": [[1, 2]]}'), 400,
     "bad_cloudevent"),
    (lambda: ce_http.HTTPMessage({**event({}).headers, "content-type": "text/csv"}, b"1,2"), 415, "content_type"),
    (lambda: ce_http.HTTPMessage(event({}).headers, b"{not json"), 400, "bad_json"),
    (lambda: event({"instances": [[1.0, 2.0]] * 400}), 413, "too_large"),
])
def test_bad_input_is_refused_counted_and_harmless(url, make, code, reason):
    Recorder.gate.set()
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, what="ready")
    r = post(url, make())
    assert r.status_code == code, r.text
    assert r.json()["reason"] == reason and r.json()["error"]
    metrics = httpx.get(url + "/metrics").text
    assert metric_value(metrics, "vigil_events_rejected_total", reason=reason) == 1
    # the service keeps working and saw nothing of the bad event
    assert post(url, event({"instances": [[1, 2]]})).status_code == 200
    assert httpx.get(url + "/status").json()["drift"]["rows"] == 1


def test_rows_with_missing_values_are_skipped_counted_and_degrade_when_most(url):
    Recorder.gate.set()
    wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, what="ready")
    r = post(url, event({"instances": [{"a": 1, "b": 2}, {"a": None, "b": 3}, {"b": 4}, [5, 6], [float("nan"), 1]]}))
    assert r.status_code == 200 and r.json()["rows"] == 2  # the detector gets the complete rows
    text = httpx.get(url + "/metrics").text
    assert metric_value(text, "vigil_instances_skipped_total", reason="missing") == 3
    status = httpx.get(url + "/status").json()
    assert status["drift"]["rows"] == 2 and status["instancesSkipped"] == {"missing": 3}
    assert not status["recent"]["degraded"] and status["recent"]["skipped"] == 1  # 3 of its 5 rows: most
    for _ in range(12):  # events all of whose rows are skipped: the detector is degraded, and says why
        assert post(url, event({"instances": [[None, 1]]})).status_code == 200
    status = httpx.get(url + "/status").json()
    assert status["recent"]["degraded"] and status["recent"]["skipped"] == 13
    assert "drift skipped 13 of 13 events: 1 of 1 instances hold a missing value" == status["recent"]["message"]
    assert metric_value(httpx.get(url + "/metrics").text, "vigil_instances_skipped_total", reason="missing") == 15


def test_failed_load_is_reported_not_fatal():
    Recorder.gate.clear()
    app = create_detector_app(Recorder, DetectorSettings(feature_names=["a", "b"]))
    Recorder.gate.wait = lambda timeout: False  # the artifact never arrives
    try:
        with serve_app(app) as base:
            wait_until(lambda: "error" in httpx.get(base + "/status").json(), what="load failure")
            r = httpx.get(base + "/readyz")
            assert r.status_code == 503 and "artifact missing" in json.dumps(r.json())
            assert httpx.get(base + "/healthz").status_code == 200
    finally:
        del Recorder.gate.wait


@pytest.mark.parametrize("status, body, headers", [
    (202, b"", None), (204, b"", None), (429, b'{"error": "x"}', {"retry-after": "1"}),
    (200, b'{"drift": {}}', {"ce-specversion": "1.0", "ce-id": "e%201", "content-type": "application/json"}),
])
def test_answer_sends_what_starlettes_response_sends(status, body, headers):
    """The hot path's `Answer` skips Starlette's header building; the bytes on the wire must not change."""
    from fastapi import Response

    from vigil_detectors.frame.app import answer

    want = Response(content=body or None, status_code=status, headers=headers)
    got = answer(status, body, headers)
    assert (got.status_code, got.body, got.raw_headers) == (want.status_code, want.body, want.raw_headers)
    assert dict(got.headers) == dict(want.headers)


def test_raw_asgi_body_reading_chunks_limit_and_disconnect():
    import asyncio

    from vigil.errors import Rejected
    from vigil_detectors.frame.app import read_asgi_body

    def receiver(*messages):
        queue = list(messages)

        async def receive():
            return queue.pop(0)
        return receive

    run = asyncio.run
    chunks = [{"type": "http.request", "body": b"ab", "more_body": True},
              {"type": "http.request", "body": b"cd", "more_body": False}]
    assert run(read_asgi_body(receiver(*chunks), None, 100)) == b"abcd"
    assert run(read_asgi_body(receiver({"type": "http.request", "body": b"x"}), "1", 100)) == b"x"
    assert run(read_asgi_body(receiver({"type": "http.disconnect"}), None, 100)) is None
    for declared, limit in (("101", 100), (None, 3)):
        with pytest.raises(Rejected) as exc:
            run(read_asgi_body(receiver(*chunks), declared, limit))
        assert exc.value.status == 413 and exc.value.reason == "too_large"


def test_chunked_and_token_checked_events_on_the_raw_path(monkeypatch):
    """``POST /`` served from raw ASGI keeps the edge: a chunked body is read whole, the token is checked."""
    monkeypatch.setenv("VIGIL_TOKEN", "s3cret")
    Recorder.gate.set()
    app = create_detector_app(Recorder, DetectorSettings(feature_names=["a", "b"]))
    with serve_app(app) as base:
        wait_until(lambda: httpx.get(base + "/readyz").status_code == 200, what="ready")
        msg = event({"instances": [[1, 2], [3, 4]]})

        def chunks():
            yield msg.body[:5]
            yield msg.body[5:]

        r = httpx.post(base + "/", headers={**msg.headers, "authorization": "Bearer s3cret"}, content=chunks())
        assert r.status_code == 200 and r.json()["rows"] == 2
        r = httpx.post(base + "/", headers=msg.headers, content=msg.body)
        assert r.status_code == 401 and r.json()["reason"] == "unauthorized"
        assert metric_value(httpx.get(base + "/metrics", headers={"authorization": "Bearer s3cret"}).text,
                            "vigil_events_rejected_total", reason="unauthorized") == 1
