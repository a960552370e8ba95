"""Adding a detector is one registry row + one package + one spec block.

The "echo" detector below exists only in this test: its settings class, its service (a
`Detector` in the shared frame), its spec block and its row. Registered, it is planned by
`vigil up` at base+9 with its settings, started as a real process that the logger feeds,
lifted into the status summary, and rendered by the operator — and no file of Vigil
names it. The processes `vigil up` starts learn it from ``VIGIL_COMPONENTS``.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import httpx
import pytest
from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from vigil import components
from vigil.components import ComponentType
from vigil.spec import DetectorBlock, SpecError, inherit, monitor_from_dict
from vigil_detectors.frame import Detector, InferenceEvent, create_detector_app
from vigil_detectors.frame.settings import DetectorSettings

# ----------------------------------------------------------------------------- the test-only detector


class EchoSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_ECHO_", extra="ignore")

    greeting: str = "hello"
    limit: int = Field(10, ge=1)
    every: int = Field(1, ge=1)

    @field_validator("every")
    @classmethod
    def _every(cls, every: int, info: ValidationInfo) -> int:  # a rule only the service knows
        if every > info.data.get("limit", every):
            raise ValueError(f"every ({every}) cannot exceed limit ({info.data['limit']})")
        return every


class EchoSpec(DetectorBlock):
    greeting: str = inherit(EchoSettings, "greeting")
    limit: int = inherit(EchoSettings, "limit")
    every: int = inherit(EchoSettings, "every")


class EchoDetector(Detector):
    name = "echo"

    def load(self) -> None:
        self.rows = 0

    async def process(self, event: InferenceEvent) -> Optional[dict]:
        self.rows += event.rows
        return {"rows": event.rows, "greeting": self.settings.greeting}

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {"echo": {"rows": self.rows, "greeting": s.greeting, "limit": s.limit, "every": s.every}}


def create_app():
    return create_detector_app(EchoDetector, EchoSettings())


def _build(ctx, block: EchoSpec) -> dict[str, Any]:
    return {"feature_names": ctx.feature_names, "greeting": ctx.at(block.greeting, "greeting"),
            "limit": ctx.at(block.limit, "limit"), "every": ctx.at(block.every, "every")}


ECHO = ComponentType("echo", 9, "tests.test_registry:EchoSettings", "tests.test_registry:create_app", _build,
                     spec_block=EchoSpec, consumes=("request",), reply_type="dev.vigil.detection.echo",
                     status_key="echo")


def register_echo() -> None:
    components.register(ECHO)


# ----------------------------------------------------------------------------- tests

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def echo(monkeypatch):
    register_echo()
    monkeypatch.setenv("VIGIL_COMPONENTS", "tests.test_registry:register_echo")
    try:
        yield ECHO
    finally:
        components.unregister("echo")


def monitor_doc(detectors: dict, model: Optional[dict] = None) -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "reg", "namespace": "t"},
            "spec": {"model": model or {"storageUri": "model.joblib", "name": "iris"},
                     "schema": {"featureNames": FEATURES}, "reference": {"storageUri": "reference.csv"},
                     "detectors": detectors}}


def test_unregistered_blocks_are_unknown_fields():
    with pytest.raises(SpecError) as err:
        monitor_from_dict(monitor_doc({"echo": {}}))
    assert (err.value.field, err.value.message) == ("spec.detectors.echo", "unknown field")


def test_a_registered_block_is_validated_by_its_model(echo):
    m = monitor_from_dict(monitor_doc({"echo": {"greeting": "hi"}}))
    assert (m.spec.detectors.echo.greeting, m.spec.detectors.echo.limit) == ("hi", 10)  # default from EchoSettings
    with pytest.raises(SpecError) as err:
        monitor_from_dict(monitor_doc({"echo": {"limit": 0}}))
    assert err.value.field == "spec.detectors.echo.limit"
    # a value the spec model admits but the service would reject: named at plan time
    from vigil.local import local_plan

    bad = monitor_from_dict(monitor_doc({"echo": {"limit": 2, "every": 5}}))
    with pytest.raises(SpecError) as err:
        local_plan(bad, "/tmp", "/tmp/w", 9000)
    assert err.value.field == "spec.detectors.echo.every" and "cannot exceed limit" in err.value.message


def test_vigil_up_starts_the_registered_detector_at_its_port(echo, tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests.prom import free_port_range
    from vigil.events import v2_request
    from vigil.local import LocalStack, local_plan
    from vigil.status import poll, summarize

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "model.joblib")
    (tmp_path / "reference.csv").write_text(",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, r)) for r in x))
    monitor = monitor_from_dict(monitor_doc({"echo": {"greeting": "bonjour", "limit": 7}}))
    base = free_port_range(10)
    plan, placement = local_plan(monitor, tmp_path, tmp_path / "work", base)
    assert plan.names == ["logger", "model", "echo"]
    c = plan.get("echo")
    assert c.port == base + 9 and c.image_role == "detectors" and not c.needs_tensorflow
    assert c.env["VIGIL_ECHO_GREETING"] == "bonjour" and c.env["VIGIL_ECHO_LIMIT"] == "7"
    sinks = json.loads(plan.get("logger").env["VIGIL_LOGGER_SINKS"])
    assert sinks == [{"name": "echo", "url": f"http://127.0.0.1:{base + 9}", "types": ["request"]}]

    stack = LocalStack(plan, placement, say=lambda _: None)
    try:
        stack.start(timeout=90)
        urls = stack.component_urls()
        r = httpx.post(f"{urls['logger']}/v2/models/iris/infer", json=v2_request(x[:3]), timeout=10)
        assert r.status_code == 200, r.text
        import asyncio
        import time

        deadline = time.monotonic() + 20
        while True:
            summary = summarize(asyncio.run(poll(urls)))
            if (summary.get("echo") or {}).get("rows") == 3:
                break
            assert time.monotonic() < deadline, summary
            time.sleep(0.2)
        # the service read exactly the settings the plan built, and its block is lifted into .status
        assert summary["echo"] == {"rows": 3, "greeting": "bonjour", "limit": 7, "every": 1}
        assert summary["components"]["echo"] == "Ready"
    finally:
        stack.stop()


def test_the_operator_renders_the_registered_detector(echo):
    from vigil.plan import build_plan
    from vigil_operator import manifests
    from vigil_operator.config import OperatorConfig
    from vigil_operator.placement import KubePlacement
    from vigil_operator.reconcile import load

    doc = monitor_doc({"echo": {"greeting": "hallo"}}, model={"storageUri": "pvc://models/iris/model.joblib"})
    doc["spec"]["reference"]["storageUri"] = "pvc://models/iris/reference.csv"
    monitor = load(doc)
    placement = KubePlacement(monitor.name, monitor.namespace)
    plan = build_plan(monitor, placement)
    rendered = manifests.render(plan, placement, OperatorConfig())
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered.all()}
    assert {("ConfigMap", "reg-echo"), ("Service", "reg-echo"), ("Deployment", "reg-echo")} <= kinds
    cm = next(o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "reg-echo")
    assert cm["data"]["VIGIL_ECHO_GREETING"] == "hallo" and cm["data"]["VIGIL_ECHO_MONITOR"] == "reg"
    container = rendered.deployments["echo"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vigil", "serve", "echo", "--port", "8080"]
    assert container["image"].endswith("/vigil-detectors:" + OperatorConfig().image_tag)
    sinks = json.loads(next(o for o in rendered.objects if o["metadata"]["name"] == "reg-logger")["data"]
                       ["VIGIL_LOGGER_SINKS"])
    assert sinks == [{"name": "echo", "url": "http://reg-echo.t.svc:8080", "types": ["request"]}]
