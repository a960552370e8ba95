"""Two outlier replicas on one durable JetStream consumer (DESIGN §13): both take part of the load,
every event is scored exactly once, and each detection is published back on the stream."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack

import httpx
import nats
import numpy as np
import pytest

from tests.natsserver import nats_server
from tests.servers import serve_component, wait_until
from tests.test_jetstream import MON, NS, _publish, _rows_event
from tests.test_outlier import FEATURES, synthetic
from vigil.transport import names

pytestmark = pytest.mark.slow
EVENTS = 400


async def _replies(url: str, consumer: str) -> list:
    nc = await nats.connect(url)
    try:
        psub = await nc.jetstream().pull_subscribe_bind(durable=consumer, stream=names.stream_name(NS, MON))
        out = []
        while True:
            try:
                msgs = await psub.fetch(500, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # the client raises either when nothing is left
                return out
            for m in msgs:
                await m.ack()
            out += msgs
    finally:
        await nc.close()


def test_two_outlier_replicas_share_one_consumer_and_score_each_event_once(tmp_path):
    from vigil_detectors.outlier.train import train_outlier

    artifact = tmp_path / "vae"
    train_outlier(synthetic(600, seed=0), {"epochs": 4, "latentDim": 2, "thresholdPercentile": 95}, artifact,
                  feature_names=FEATURES, progress=lambda msg: None)
    rows = synthetic(EVENTS, seed=3)
    with nats_server(tmp_path / "nats") as server:
        env = {"VIGIL_OUTLIER_MONITOR": MON, "VIGIL_OUTLIER_NAMESPACE": NS, "VIGIL_OUTLIER_ARTIFACT": str(artifact),
               "VIGIL_OUTLIER_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_OUTLIER_MAX_BATCH_SIZE": "16",
               "VIGIL_OUTLIER_TRANSPORT": json.dumps({"type": "jetstream", "url": server.url})}
        # a consumer of the detections, there before any is published (the stream keeps what someone wants)
        replies = (("outlier", ("request",)), ("watch", ("detection",)))
        asyncio.run(_publish(server.url, [], consumers=replies))
        with ExitStack() as stack:
            urls = [stack.enter_context(serve_component("outlier", env, timeout=120)) for _ in range(2)]
            sink = asyncio.run(_publish(server.url, [_rows_event(f"i-{i}", rows[i:i + 1]) for i in range(EVENTS)],
                                        consumers=replies))
            assert sink.sent == EVENTS

            def seen() -> list[int]:
                return [httpx.get(u + "/status").json()["outliers"]["seen"] for u in urls]

            wait_until(lambda: sum(seen()) >= EVENTS, timeout=90, interval=0.2, what="both replicas scored the stream")
            counts = seen()
        assert sum(counts) == EVENTS, counts  # each event scored once, by one replica
        assert min(counts) > 0, counts  # both took part of the load
        got = asyncio.run(_replies(server.url, "watch"))
        assert len(got) == EVENTS
        assert {m.headers["ce-inferenceid"] for m in got} == {f"i-{i}" for i in range(EVENTS)}
        assert {m.headers["ce-type"] for m in got} == {"dev.vigil.detection.outlier"}
        assert all(m.subject == names.reply_subject(NS, MON, "outlier") for m in got)
        assert np.isfinite([json.loads(m.data)["data"]["instance_score"][0] for m in got]).all()
