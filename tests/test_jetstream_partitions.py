"""Metrics partitioned over replicas (DESIGN §13): the operator gives each metrics replica its partitions.

`spec.detectors.metrics.replicas: N` over JetStream renders a StatefulSet whose pods learn their
ordinal from their name (downward API); replica i of N consumes the partitions p with
p % N == i (`vigil.transport.names.replica_partitions`), and the logger creates exactly those N
durable consumers (`vigil.transport.jetstream.consumer_specs`), so request, response and feedback
of one inference meet in one pod. Over HTTP, or with more replicas than partitions, the monitor
fails naming the field. The end-to-end test runs the rendered metrics replicas (their ConfigMap
env plus the pod name) against a real nats-server, fed through the logger's consumers.
"""

from __future__ import annotations

import asyncio
import json
import re

import kubernetes_validate
import pytest
import yaml

from tests.natsserver import nats_server
from tests.servers import serve_app, wait_until
from tests.test_jetstream import _event, _status
from tests.test_operator_manifests import example, render
from vigil.spec import SpecError
from vigil.transport import names
from vigil.transport.jetstream import consumer_specs


async def _publish_as(logger, specs, events):
    """Publish through the logger's JetStream sink as the rendered logger's settings configure it."""
    from vigil.logger.metrics import LoggerMetrics
    from vigil.logger.sinks import RetryPolicy
    from vigil.transport.jetstream import JetStreamSink

    sink = JetStreamSink(logger.transport, specs, logger.namespace, logger.monitor, RetryPolicy(3, 0.05, 0.2),
                         LoggerMetrics(logger.monitor, logger.namespace, ["jetstream"]), queue_size=100_000)
    sink.start()
    for e in events:
        assert sink.offer(e)
    deadline = asyncio.get_running_loop().time() + 60
    while sink.sent + sum(sink.dropped.values()) < len(events) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    await sink.stop(5.0)
    return sink


def _doc(replicas: int, transport: dict | None = None) -> dict:
    doc = example()
    doc["spec"]["detectors"]["metrics"] = {"task": "classification", "replicas": replicas}
    if transport is not None:
        doc["spec"]["transport"] = transport
    return doc


JS = {"type": "jetstream", "url": "nats://nats.nats.svc:4222", "partitions": 4}


def _config_env(rendered, component: str) -> dict:
    (cm,) = [o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(f"-{component}")]
    return dict(cm["data"])


@pytest.mark.parametrize("replicas, partitions", [(1, 1), (2, 4), (3, 4), (4, 4), (3, 8), (5, 64)])
def test_replicas_share_every_partition_exactly_once(replicas, partitions):
    shares = [names.replica_partitions(i, replicas, partitions) for i in range(replicas)]
    assert sorted(p for share in shares for p in share) == list(range(partitions))
    assert all(shares)
    with pytest.raises(ValueError):
        names.replica_partitions(replicas, replicas, partitions)


def test_metrics_replicas_render_a_statefulset_with_the_pod_ordinal():
    plan, placement, rendered = render(_doc(3, JS))
    sts = rendered.deployments["metrics"]
    kubernetes_validate.validate(sts, "1.32.0", strict=True)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    assert sts["metadata"]["name"] == "iris-metrics" and sts["spec"]["serviceName"] == "iris-metrics"
    assert sts["spec"]["podManagementPolicy"] == "Parallel" and "strategy" not in sts["spec"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": "VIGIL_METRICS_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert _config_env(rendered, "metrics")["VIGIL_METRICS_CONSUMER_REPLICAS"] == "3"
    service = next(o for o in rendered.objects if o["kind"] == "Service" and o["metadata"]["name"] == "iris-metrics")
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert any(o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "iris-metrics" for o in rendered.objects)
    sinks = {s["name"]: s for s in json.loads(_config_env(rendered, "logger")["VIGIL_LOGGER_SINKS"])}
    assert sinks["metrics"]["consumer_replicas"] == 3 and "consumer_replicas" not in sinks["drift"]
    # every other component stays a Deployment
    assert {d["kind"] for name, d in rendered.deployments.items() if name != "metrics"} == {"Deployment"}


@pytest.mark.parametrize("transport", [None, JS], ids=["http", "jetstream"])
def test_one_metrics_replica_renders_as_before(transport):
    _, _, rendered = render(_doc(1, transport))
    dep = rendered.deployments["metrics"]
    assert dep["kind"] == "Deployment" and dep["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert "VIGIL_METRICS_CONSUMER_REPLICAS" not in _config_env(rendered, "metrics")
    assert not any(e["name"] == "VIGIL_METRICS_POD_NAME" for e in dep["spec"]["template"]["spec"]["containers"][0]["env"])
    sinks = json.loads(_config_env(rendered, "logger")["VIGIL_LOGGER_SINKS"])
    assert all("consumer_replicas" not in s for s in sinks)


@pytest.mark.parametrize("transport, message", [
    (None, "detectors.metrics.replicas above 1 needs transport.type jetstream"),
    ({**JS, "partitions": 2}, "detectors.metrics.replicas (3) exceeds transport.partitions (2)"),
], ids=["http", "too-few-partitions"])
def test_metrics_replicas_the_transport_cannot_split_fail_the_monitor(transport, message):
    with pytest.raises(SpecError) as err:
        render(_doc(3, transport))
    assert err.value.field == "spec" and message in str(err.value), str(err.value)


@pytest.mark.parametrize("values, message", [
    ({"consumer_replicas": 2}, "over HTTP one replica receives every event"),
    ({"consumer_replicas": 5, "transport": JS}, "5 replicas need at least as many transport partitions, not 4"),
], ids=["http", "too-few-partitions"])
def test_a_metrics_service_refuses_replicas_it_cannot_split(values, message):
    from pydantic import ValidationError

    from vigil_detectors.metrics.settings import MetricsSettings

    with pytest.raises(ValidationError, match=re.escape(message)):
        MetricsSettings(**values)
    share = MetricsSettings(consumer_replicas=3, transport=JS, pod_name="iris-metrics-1").own_partitions()
    assert share == names.replica_partitions(1, 3, 4) == (1,)
    with pytest.raises(ValueError, match="ordinal"):  # not a StatefulSet pod: it cannot know its share
        MetricsSettings(consumer_replicas=3, transport=JS, pod_name="iris-metrics-7f9c8d-abcde").own_partitions()


def test_crd_admits_metrics_replicas_above_one():
    crd = yaml.safe_load(open("crds/modelmonitors.vigil.dev.yaml"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    replicas = spec["properties"]["detectors"]["properties"]["metrics"]["properties"]["replicas"]
    assert replicas.get("maximum", 64) > 1 and "JetStream" in replicas["description"]


def test_rendered_metrics_replicas_join_their_inferences_over_a_real_nats(tmp_path, monkeypatch):
    """The rendered metrics replicas (ConfigMap env + their StatefulSet pod names) and the consumers the
    rendered logger creates: every feedback is joined once, in the replica owning its inference."""
    from vigil.logger.settings import LoggerSettings
    from vigil_detectors.metrics.service import create_app
    from vigil_detectors.metrics.settings import MetricsSettings

    n, replicas, partitions = 80, 2, 4
    with nats_server(tmp_path / "nats") as server:
        doc = _doc(replicas, {"type": "jetstream", "url": server.url, "partitions": partitions})
        _, _, rendered = render(doc)
        sts = rendered.deployments["metrics"]

        def settings(cls, env: dict):
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            try:
                return cls()
            finally:
                for k in env:
                    monkeypatch.delenv(k)

        metrics_env = _config_env(rendered, "metrics")
        pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
        apps = [create_app(settings(MetricsSettings, {**metrics_env, "VIGIL_METRICS_POD_NAME": pod})) for pod in pods]
        logger = settings(LoggerSettings, _config_env(rendered, "logger"))
        specs = consumer_specs(logger.sinks, logger.transport)
        mine = {s.name: s for s in specs if s.component == "metrics"}
        assert len(mine) == replicas

        ids = [f"inf-{i}" for i in range(n)]
        events = []
        for i, iid in enumerate(ids):
            events.append(_event("response", iid, json.dumps({"predictions": [i % 3]}).encode()))
            events.append(_event("feedback", iid, json.dumps({"truth": [i % 3 if i % 5 else (i + 1) % 3]}).encode()))
        for e in events:
            e.attributes.update(monitorname=logger.monitor, namespace=logger.namespace)
        with serve_app(apps[0]) as u0, serve_app(apps[1]) as u1:
            urls = [u0, u1]
            wait_until(lambda: all(_status(u)["transport"]["connected"] for u in urls), timeout=30)
            consumers = [_status(u)["transport"]["consumer"] for u in urls]
            assert sorted(consumers) == sorted(mine), "a replica reads a consumer the logger does not feed"
            sink = asyncio.run(_publish_as(logger, specs, events))
            assert sink.sent == 2 * n
            owned = [[iid for iid in ids if names.partition_of(iid, partitions) in mine[c].partitions]
                     for c in consumers]
            assert all(owned) and sum(map(len, owned)) == n
            wait_until(lambda: [_status(u)["metrics"].get("feedback", 0) for u in urls] == [len(o) for o in owned],
                       timeout=30, what="each replica joined the feedback of its own inferences")
            for u, o in zip(urls, owned, strict=True):
                st = _status(u)
                assert st["transport"]["messages"]["ack"] == 2 * len(o)
                wrong = sum(1 for iid in o if int(iid.split("-")[1]) % 5 == 0)
                assert st["metrics"]["accuracy"] == pytest.approx(1 - wrong / len(o))


@pytest.mark.asyncio
async def test_operator_turns_metrics_replicas_into_a_statefulset_in_the_emulator(tmp_path, monkeypatch):
    """Real kopf against the API emulator, with the operator's RBAC rules only: scaling metrics to 2
    replicas over JetStream replaces its Deployment by a StatefulSet, tells the logger, and the
    monitor's status follows the StatefulSet's rollout."""
    import copy

    from tests.operator_harness import KINDS, cluster, eventually, load_example, running_operator

    doc = copy.deepcopy(load_example("iris-monitor.yaml"))
    doc["spec"]["transport"] = JS
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        await c.create_monitor(doc)
        await eventually(lambda: "iris-metrics" in c.objects("Deployment"), what="the metrics Deployment")
        assert "iris-metrics" not in c.objects("StatefulSet")
        await c.patch_monitor("iris", {"spec": {"detectors": {"metrics": {"replicas": 2}}}})
        sts = await eventually(lambda: c.objects("StatefulSet").get("iris-metrics"), what="the metrics StatefulSet")
        await eventually(lambda: "iris-metrics" not in c.objects("Deployment"), what="the old Deployment deleted")
        assert sts["spec"]["replicas"] == 2
        assert c.objects("ConfigMap")["iris-metrics"]["data"]["VIGIL_METRICS_CONSUMER_REPLICAS"] == "2"
        sinks = json.loads(c.objects("ConfigMap")["iris-logger"]["data"]["VIGIL_LOGGER_SINKS"])
        assert next(s for s in sinks if s["name"] == "metrics")["consumer_replicas"] == 2
        await eventually(lambda: c.status("iris").get("components", {}).get("metrics") == "Deploying",
                         what="metrics deploying while its StatefulSet rolls out")
        # the statefulset controller: both pods of the current generation updated and available
        await c.emu.set_status(KINDS["StatefulSet"], "default", "iris-metrics", {
            "observedGeneration": sts["metadata"]["generation"], "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2})
        await eventually(lambda: c.status("iris").get("components", {}).get("metrics") not in (None, "Deploying",
                                                                                                   "Pending"),
                         what="metrics rolled out (its pods answer no /status here)")
        assert c.status("iris")["phase"] != "Failed"
        assert not c.forbidden(), c.forbidden()
