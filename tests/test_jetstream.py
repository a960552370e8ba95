"""Events over NATS JetStream (DESIGN §13), against a real nats-server on loopback (one per test).

The logger's publisher (`JetStreamSink`), the detectors' durable pull consumers
(`vigil_detectors.frame.consumer`) and the names on the stream are exercised for real:
message ids de-duplicate retries but not feedback corrections, a refused publish is a
counted drop, drift acknowledges only after its checkpoint and neither loses nor double
counts across a SIGKILL, two outlier replicas on one consumer share the load, and the
logger exports consumer lag.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import nats
import numpy as np
import pandas as pd
import pytest

from tests.natsserver import nats_server
from tests.servers import metric_value, serve_component, wait_until
from vigil.events import KIND_TO_TYPE
from vigil.logger.metrics import LoggerMetrics
from vigil.logger.sinks import Event, RetryPolicy
from vigil.transport import TransportConfig, names
from vigil.transport.jetstream import ConsumerSpec, JetStreamSink

NS, MON = "ns", "js-test"
FEATURES = ["a", "b", "c"]


def test_names_follow_the_design():
    assert names.stream_name("my-ns", "iris-prod") == "VIGIL_MY_NS_IRIS_PROD"
    assert names.event_subject("ns", "iris", "request", "abc", 4) == f"vigil.ns.iris.request.{names.partition_of('abc', 4)}"
    assert names.message_id("request", "abc", "e1") == "request:abc"
    assert names.message_id("feedback", "abc", "e1") == "feedback:abc:e1"
    # one inference's request, response and feedback share a partition; ids spread over all of them
    parts = {names.partition_of(str(i), 4) for i in range(200)}
    assert parts == {0, 1, 2, 3}
    assert names.filter_subjects("ns", "iris", ["response", "feedback"], [1]) == ["vigil.ns.iris.response.1",
                                                                                  "vigil.ns.iris.feedback.1"]


def _event(kind: str, iid: str, data: bytes, event_id: str | None = None) -> Event:
    return Event(kind, {"id": event_id or str(uuid.uuid4()), "source": "/vigil/test/logger", "type": KIND_TO_TYPE[kind],
                        "specversion": "1.0", "time": time.time(), "datacontenttype": "application/json",
                        "inferenceid": iid, "modelname": "m", "monitorname": MON, "namespace": NS,
                        "endpoint": "/v2/models/m/infer"}, data)


def _rows_event(iid: str, rows) -> Event:
    return _event("request", iid, json.dumps({"instances": np.asarray(rows).tolist()}).encode())


async def _publish(url: str, events: list[Event], consumers=(("drift", ("request",)),), retries: int = 3,
                   **config) -> JetStreamSink:
    """Publish through the logger's sink and wait until it delivered (or dropped) everything."""
    cfg = TransportConfig(type="jetstream", url=url, **config)
    specs = [c if isinstance(c, ConsumerSpec) else ConsumerSpec(*c) for c in consumers]
    metrics = LoggerMetrics(MON, NS, ["jetstream"])
    sink = JetStreamSink(cfg, specs, NS, MON, RetryPolicy(retries, 0.05, 0.2), metrics, queue_size=100_000)
    sink.start()
    for e in events:
        assert sink.offer(e)
    deadline = time.monotonic() + 60
    while sink.sent + sum(sink.dropped.values()) < len(events) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await sink.poll_lag()
    await sink.stop(5.0)
    sink.metrics_text = metrics.exposition()[0].decode()  # type: ignore[attr-defined]
    return sink


async def _stream_messages(url: str) -> list:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(names.stream_name(NS, MON))
    out = [await js.get_msg(info.config.name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    await nc.close()
    return out


def test_logger_retries_do_not_duplicate_but_corrections_are_new(tmp_path):
    with nats_server(tmp_path / "nats") as server:
        req = _rows_event("inf-1", [[1.0, 2.0, 3.0]])
        fb1 = _event("feedback", "inf-1", b'{"truth": [0]}')
        fb2 = _event("feedback", "inf-1", b'{"truth": [1]}')  # a correction: a new feedback event
        # the same Event offered again is what a retry re-sends: same ce-id, same Nats-Msg-Id
        sink = asyncio.run(_publish(server.url, [req, req, fb1, fb1, fb2],
                                    consumers=(("drift", ("request",)), ("metrics", ("response", "feedback")))))
        assert sink.sent == 5 and sink.duplicates == 2 and not sum(sink.dropped.values())
        msgs = {m.headers["Nats-Msg-Id"]: m for m in asyncio.run(_stream_messages(server.url))}  # 4 workers: any order
        fb_id = f"feedback:inf-1:{fb1.attributes['id']}"
        assert sorted(msgs) == sorted(["request:inf-1", fb_id, f"feedback:inf-1:{fb2.attributes['id']}"])
        first = msgs["request:inf-1"]
        p = names.partition_of("inf-1", 4)
        assert first.subject == f"vigil.{NS}.{MON}.request.{p}" and msgs[fb_id].subject == f"vigil.{NS}.{MON}.feedback.{p}"
        # binary mode: the CloudEvent attributes ride as ce- headers, the body is the request body as sent
        assert first.headers["ce-type"] == "dev.vigil.inference.request"
        assert first.headers["ce-inferenceid"] == "inf-1" and first.headers["ce-id"] == req.attributes["id"]
        assert json.loads(first.data) == {"instances": [[1.0, 2.0, 3.0]]}
        # consumer lag: nobody consumed yet, so everything each consumer wants is pending
        assert sink.lag == {"drift": 1, "metrics": 2}
        assert metric_value(sink.metrics_text, "vigil_transport_pending_messages", consumer="metrics") == 2


def test_a_full_stream_refuses_and_the_refusal_is_a_counted_drop(tmp_path):
    with nats_server(tmp_path / "nats") as server:
        big = [_rows_event(f"inf-{i}", np.zeros((40, 3))) for i in range(40)]  # ~1 KiB each
        sink = asyncio.run(_publish(server.url, big, max_bytes=8 * 1024))
        assert sink.dropped["refused"] > 0 and sink.sent > 0
        assert sink.sent + sink.dropped["refused"] == len(big)
        assert metric_value(sink.metrics_text, "vigil_logger_events_dropped_total", sink="jetstream",
                            reason="refused") == sink.dropped["refused"]


def test_nats_down_drops_are_counted_and_offer_never_waits(tmp_path):
    # nobody listens on this port: every event is retried, then dropped, and counted
    from tests.servers import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    events = [_rows_event(f"inf-{i}", [[0.0, 0.0, 0.0]]) for i in range(20)]
    t0 = time.perf_counter()
    sink = asyncio.run(_publish(url, events, retries=1))
    assert sink.sent == 0 and sink.dropped["retries_exhausted"] == len(events)
    assert time.perf_counter() - t0 < 30


@pytest.fixture(scope="module")
def ref_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ref") / "reference.csv"
    pd.DataFrame(np.random.default_rng(42).normal(size=(2000, 3)), columns=FEATURES).to_csv(path, index=False)
    return str(path)


def _drift_env(url: str, ref_csv: str, state: Path, size: int = 50) -> dict[str, str]:
    return {"VIGIL_DRIFT_MONITOR": MON, "VIGIL_DRIFT_NAMESPACE": NS, "VIGIL_DRIFT_REFERENCE": ref_csv,
            "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_DRIFT_WINDOW_SIZE": str(size),
            "VIGIL_DRIFT_STATE_DIR": str(state), "VIGIL_DRIFT_MAX_AGE_SECONDS": "0",
            "VIGIL_DRIFT_TRANSPORT": json.dumps({"type": "jetstream", "url": url, "ack_wait_seconds": 2})}


@pytest.mark.slow
def test_drift_killed_mid_window_sees_every_instance_exactly_once(tmp_path, ref_csv):
    """SIGKILL while events stream in; after the restart the instances drift holds equal those sent."""
    rng = np.random.default_rng(7)
    batches = [rng.normal(size=(int(rng.integers(1, 5)), 3)) for _ in range(600)]
    sent_rows = sum(b.shape[0] for b in batches)
    with nats_server(tmp_path / "nats") as server:
        env = _drift_env(server.url, ref_csv, tmp_path / "state")
        with serve_component("drift", env) as url:
            first = asyncio.run(_publish(server.url, [_rows_event(f"a-{i}", b) for i, b in enumerate(batches[:300])],
                                         consumers=KEEPER))
            assert first.sent == 300
            # kill it while it is still working through the stream (mid-window, acks outstanding)
            wait_until(lambda: _status(url)["drift"]["instances"] > 50, timeout=30)
            os.kill(url.pid, signal.SIGKILL)
        second = asyncio.run(_publish(server.url, [_rows_event(f"b-{i}", b) for i, b in enumerate(batches[300:])],
                                      consumers=KEEPER))
        assert second.sent == 300
        with serve_component("drift", env) as url:
            # a lost event never arrives (timeout); one counted twice shows once the redeliveries are through
            wait_until(lambda: _status(url)["drift"]["instances"] >= sent_rows, timeout=60, interval=0.2,
                       what="drift holds every instance sent")
            wait_until(lambda: asyncio.run(_lag(server.url, "drift")) == 0, timeout=30, interval=0.2)
            time.sleep(2.5)  # past the ack wait: anything unacknowledged would have been redelivered
            st = _status(url)
            drift = st["drift"]
            assert drift["instances"] == sent_rows, (drift["instances"], sent_rows, st["transport"])
            assert drift["windows"] == sent_rows // 50 and drift["fill"] == sent_rows % 50
            os.kill(url.pid, signal.SIGKILL)
        # Every event delivered again (the consumer recreated from the start; "keeper" kept them in the
        # stream): the restarted drift holds them all, so it acknowledges them without counting any twice.
        asyncio.run(_delete_consumer(server.url, "drift"))
        with serve_component("drift", env) as url:
            wait_until(lambda: _status(url)["transport"]["messages"]["held"] >= 600, timeout=60, interval=0.2,
                       what="drift went through the replayed stream")
            st = _status(url)
            assert st["transport"]["messages"] == {"ack": 0, "term": 0, "nak": 0, "held": 600}
            assert st["drift"]["instances"] == sent_rows and st["drift"]["windows"] == sent_rows // 50


def _status(url: str) -> dict:
    return httpx.get(url + "/status", timeout=10).json()


KEEPER = (("drift", ("request",)), ("keeper", ("request",)))  # keeper never acks: the stream keeps every event


async def _delete_consumer(url: str, consumer: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_consumer(names.stream_name(NS, MON), consumer)
    finally:
        await nc.close()


async def _lag(url: str, consumer: str) -> int:
    from vigil.transport.jetstream import pending

    nc = await nats.connect(url)
    try:
        return await pending(nc.jetstream(), names.stream_name(NS, MON), consumer)
    finally:
        await nc.close()


def _monitor(transport: dict | None):
    from vigil.spec import monitor_from_dict

    spec = {"model": {"storageUri": "file:///m/model.joblib"}, "schema": {"featureNames": FEATURES},
            "detectors": {"drift": {"storageUri": "file:///m/drift"}, "metrics": {"task": "regression"}}}
    if transport is not None:
        spec["transport"] = transport
    return monitor_from_dict({"metadata": {"name": "iris", "namespace": "prod"}, "spec": spec})


def test_spec_transport_reaches_the_logger_and_every_detector():
    from vigil.plan import build_plan
    from vigil_operator.placement import KubePlacement

    plan = build_plan(_monitor({"type": "jetstream", "maxBytes": "64Mi", "partitions": 2}),
                      KubePlacement("iris", "prod", nats_url="nats://nats.vigil:4222"))
    for name in ("logger", "drift", "metrics"):
        c = plan.get(name)
        assert c is not None
        key = {"logger": "VIGIL_LOGGER_TRANSPORT", "drift": "VIGIL_DRIFT_TRANSPORT", "metrics": "VIGIL_METRICS_TRANSPORT"}
        assert json.loads(c.env[key[name]]) == {"type": "jetstream", "url": "nats://nats.vigil:4222", "partitions": 2,
                                                "max_bytes": 64 * 2**20, "ack_wait_seconds": 10.0}
        assert c.settings.transport.jetstream
    assert "VIGIL_MODEL_TRANSPORT" not in str(plan.get("model").env)
    # HTTP (the default) renders as before: no transport in any environment
    http = build_plan(_monitor(None), KubePlacement("iris", "prod"))
    assert not [k for c in http.components for k in c.env if k.endswith("_TRANSPORT")]


@pytest.mark.parametrize("transport, field", [
    ({"type": "jetstream"}, "spec.transport.url"),  # no url, and this backend runs no NATS
    ({"type": "jetstream", "url": "http://nats:4222"}, "spec.transport.url"),
    ({"type": "kafka"}, "spec.transport.type"),
    ({"type": "jetstream", "url": "nats://n:4222", "maxBytes": "12"}, "spec.transport.maxBytes"),
])
def test_a_bad_transport_names_its_field(transport, field):
    from vigil.plan import build_plan
    from vigil.spec import SpecError
    from vigil_operator.placement import KubePlacement

    with pytest.raises(SpecError) as exc:
        build_plan(_monitor(transport), KubePlacement("iris", "prod"))
    assert exc.value.field == field


def test_logger_over_jetstream_keeps_answering_when_nats_stops(tmp_path):
    """Inference through the logger with NATS up, then stopped (answers unaffected, drops counted), then back."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests.natsserver import NatsServer
    from tests.servers import serve_app
    from vigil.events import v2_request
    from vigil.logger.app import create_app
    from vigil.logger.settings import LoggerSettings
    from vigil.modelserver.app import create_app as model_app
    from vigil.modelserver.settings import ModelServerSettings

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "model.joblib")
    server = NatsServer(tmp_path / "nats").start()
    try:
        settings = LoggerSettings(upstream="", monitor=MON, namespace=NS, retries=1, backoff_initial_seconds=0.01,
                                  backoff_max_seconds=0.02, sink_timeout_seconds=0.5,
                                  sinks=[{"name": "drift", "url": "http://unused:1", "types": ["request"]}],
                                  transport={"type": "jetstream", "url": server.url})
        with serve_app(model_app(ModelServerSettings(uri=str(tmp_path / "model.joblib"), name="iris"))) as model:
            settings.upstream = model
            with serve_app(create_app(settings)) as url, httpx.Client(timeout=10) as c:
                def infer(i: int) -> float:
                    t = time.perf_counter()
                    r = c.post(url + "/v2/models/iris/infer", json=v2_request(x[i:i + 1]))
                    assert r.status_code == 200
                    return time.perf_counter() - t

                def sink() -> dict:
                    return c.get(url + "/status").json()["logger"]["sinks"]["jetstream"]

                wait_until(lambda: sink()["connected"], timeout=20)
                for i in range(10):
                    infer(i)
                wait_until(lambda: sink()["sent"] == 10, timeout=20)  # only requests: drift wants no responses
                # nobody consumes: the lag the logger exports rises to what was published
                wait_until(lambda: metric_value(c.get(url + "/metrics").text, "vigil_transport_pending_messages",
                                                consumer="drift") == 10, timeout=20)
                server.stop()
                slowest = max(infer(i) for i in range(10, 30))
                assert slowest < 1.0, slowest  # never waits for NATS
                wait_until(lambda: sink()["dropped"].get("retries_exhausted", 0) == 20, timeout=30,
                           what="every event published while NATS was down counted as dropped")
                text = c.get(url + "/metrics").text
                assert metric_value(text, "vigil_logger_events_dropped_total", sink="jetstream",
                                    reason="retries_exhausted") == 20
                server.start()  # same port and store: the client reconnects and publishing resumes
                wait_until(lambda: (infer(99) or True) and sink()["sent"] > 10, timeout=30, interval=0.5)
    finally:
        server.stop()


def test_metrics_replicas_each_consume_their_partitions_keyed_by_inference_id(tmp_path):
    """Two metrics services on disjoint partitions: each joins the responses and feedback of its own inferences."""
    from tests.servers import serve_app
    from vigil_detectors.metrics.service import create_app
    from vigil_detectors.metrics.settings import MetricsSettings

    n, parts = 60, 2
    ids = [f"inf-{i}" for i in range(n)]
    events = []
    for i, iid in enumerate(ids):
        events.append(_event("response", iid, json.dumps({"predictions": [i % 3]}).encode()))
        events.append(_event("feedback", iid, json.dumps({"truth": [i % 3 if i % 4 else (i + 1) % 3]}).encode()))
    with nats_server(tmp_path / "nats") as server:
        transport = {"type": "jetstream", "url": server.url, "partitions": parts}
        apps = [create_app(MetricsSettings(monitor=MON, namespace=NS, task="classification", transport=transport,
                                           consumer_partitions=[p])) for p in range(parts)]
        with serve_app(apps[0]) as u0, serve_app(apps[1]) as u1:
            urls = [u0, u1]
            wait_until(lambda: all(_status(u)["transport"]["connected"] for u in urls), timeout=30)
            # the logger creates the consumers the replicas read (the same names and partition filters)
            sink = asyncio.run(_publish(server.url, events, consumers=[
                ConsumerSpec("metrics", ("response", "feedback"), (p,)) for p in range(parts)], partitions=parts))
            assert sink.sent == 2 * n
            mine = [[iid for iid in ids if names.partition_of(iid, parts) == p] for p in range(parts)]
            assert all(mine)
            wait_until(lambda: [_status(u)["metrics"].get("feedback", 0) for u in urls] == [len(m) for m in mine],
                       timeout=30, what="each replica joined its partition's feedback")
            for u, m in zip(urls, mine, strict=True):
                st = _status(u)
                assert st["transport"]["consumer"] in ("metrics-p0", "metrics-p1")
                assert st["transport"]["messages"]["ack"] == 2 * len(m)
                wrong = sum(1 for iid in m if int(iid.split("-")[1]) % 4 == 0)
                assert st["metrics"]["accuracy"] == pytest.approx(1 - wrong / len(m))
