"""The seam between the spec and each service's settings, and the one `vigil train` command line.

- A spec the CRD admits but a service would reject is a `SpecError` naming the spec field
  when the plan is built: `vigil up` exits 2 before it trains or starts anything, and the
  operator (real kopf against the API emulator) sets phase Failed naming the field and
  creates no object, then recovers when the spec is fixed.
- The environment the plan renders is read back by each service's own settings class as
  exactly the settings the plan built.
- `vigil up`, `vigil train` and the operator's training Job share `train_argv`: an endpoint
  monitor's explainer is trained against the endpoint, under the monitor's model name.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vigil import components
from vigil.local import LocalStack, local_plan
from vigil.plan import build_plan, train_argv
from vigil.spec import SpecError, monitor_from_dict

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def example(name: str = "iris-monitor.yaml") -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def local(doc: dict) -> dict:
    """The example with local paths, as `vigil up` would take it."""
    doc = copy.deepcopy(doc)
    doc["spec"]["model"]["storageUri"] = "model.joblib"
    doc["spec"]["reference"]["storageUri"] = "reference.csv"
    return doc


# Each passes the CRD schema and the spec model, and each is refused by the service's settings.
REJECTED = [
    (lambda s: s["detectors"]["drift"].update(window={"size": 100, "step": 500}),
     "spec.detectors.drift.window.step", "cannot exceed the window size"),
    (lambda s: s["schema"].update(categorical={"petal_width": 0}), "spec.schema.categorical.petal_width",
     "greater than 0"),
    (lambda s: s["schema"].update(categorical={"sepal_length": []}), "spec.schema.categorical.sepal_length",
     "the outlier service would refuse to start"),  # an empty value list: no category at all
]


@pytest.mark.parametrize("mutate, field, words", REJECTED)
def test_local_planner_names_the_spec_field(mutate, field, words, tmp_path):
    doc = local(example())
    mutate(doc["spec"])
    monitor = monitor_from_dict(doc)  # the spec model admits it …
    with pytest.raises(SpecError) as err:  # … the service's settings do not
        local_plan(monitor, tmp_path, tmp_path / "w", 9000)
    assert err.value.field == field and words in err.value.message


def test_vigil_up_refuses_before_starting_anything(tmp_path):
    doc = local(example())
    doc["spec"]["detectors"]["drift"]["window"] = {"size": 100, "step": 500}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "vigil", "up", str(tmp_path / "m.yaml"), "--workdir",
                          str(tmp_path / "w"), "--base-port", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "spec.detectors.drift.window.step" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "w").exists()  # nothing trained, no process started, no log written


@pytest.mark.asyncio
async def test_operator_fails_the_monitor_naming_the_field_and_recovers(tmp_path, monkeypatch):
    from tests.operator_harness import cluster, eventually, running_operator

    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        for mutate, field, words in REJECTED:
            doc = example()
            doc["metadata"]["name"] = name = f"bad-{REJECTED.index((mutate, field, words))}"
            mutate(doc["spec"])
            await c.create_monitor(doc)  # the emulator checks it against the CRD schema: admitted
            status = await eventually(lambda: c.status(name).get("phase") == "Failed" and c.status(name),  # noqa: B023
                                      what=f"{name} Failed")
            assert status["message"].startswith(field) and words in status["message"], status["message"]
            assert status["conditions"][0]["reason"] == "InvalidSpec"
            assert c.children(name) == {}  # no pod would start with settings its service rejects
        await c.patch_monitor("bad-0", {"spec": {"detectors": {"drift": {"window": {"step": 50}}}}})
        await eventually(lambda: c.status("bad-0").get("phase") == "Training", what="recovered")
        cm = c.objects("ConfigMap")["bad-0-drift"]["data"]
        assert (cm["VIGIL_DRIFT_WINDOW_SIZE"], cm["VIGIL_DRIFT_WINDOW_STEP"]) == ("100", "50")
        assert not c.forbidden(), c.forbidden()


def test_each_service_reads_back_the_settings_the_plan_built(tmp_path, monkeypatch):
    doc = local(example())
    doc["spec"]["schema"]["categorical"] = {"petal_width": ["thin", "wide"]}
    doc["spec"]["detectors"]["drift"]["window"] = {"size": 200, "mode": "sliding", "step": 20}
    plan, _ = local_plan(monitor_from_dict(doc), tmp_path, tmp_path / "w", 9000)
    for c in plan.components:
        cls = components.get(c.name).settings_class()
        for key in list(__import__("os").environ):
            if key.startswith(cls.model_config["env_prefix"]):
                monkeypatch.delenv(key)
        for key, value in c.env.items():
            monkeypatch.setenv(key, value)
        assert cls().model_dump() == c.settings.model_dump(), c.name
    drift = plan.get("drift").settings
    # the value lists themselves reach the services (strings map to codes in list order, DESIGN §8)
    assert (drift.categorical, drift.window_step, drift.statistic) == ({"3": ["thin", "wide"]}, 20, "ks")
    assert plan.get("explainer").settings.categorical == {"3": ["thin", "wide"]}  # the same converter for both


def endpoint_monitor(endpoint: str) -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "ep"},
            "spec": {"model": {"endpoint": endpoint, "name": "iris"}, "schema": {"featureNames": FEATURES},
                     "reference": {"storageUri": "reference.csv"},
                     "detectors": {"explainer": {"threshold": 0.9}}}}


def test_the_train_command_line_is_one(tmp_path):
    from vigil_operator import manifests
    from vigil_operator.placement import KubePlacement, resolve

    doc = endpoint_monitor("http://iris.prod.svc:8080/")
    doc["spec"]["reference"]["storageUri"] = "pvc://data/reference.csv"
    monitor = monitor_from_dict(doc)
    plan = build_plan(monitor, KubePlacement("ep", "default"))
    [step] = plan.training
    job = manifests.train_command(step, plan)
    # the Job trains into its own out volume (then uploads it); it reads the fetched copies
    out = f"/mnt/vigil/out/{step.component}"
    assert job == ["vigil", *train_argv(step, lambda u: out if u == step.output_uri else resolve(u).path)]
    args = dict(zip(job[2::2], job[3::2], strict=False))
    assert args["--model"] == "http://iris.prod.svc:8080" and args["--model-name"] == "iris"
    assert args["--reference"] == resolve("pvc://data/reference.csv").path
    assert args["--feature-names"] == '["sepal_length", "sepal_width", "petal_length", "petal_width"]'


def test_vigil_up_trains_an_endpoint_monitors_explainer_under_its_model_name(tmp_path):
    """The model server serves the model as "iris" only: a trainer calling /v2/models/model/infer
    would get 404s. `vigil up`'s training step reaches it through the shared command line."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from tests.servers import serve_component

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "model.joblib")
    np.savetxt(tmp_path / "reference.csv", x, delimiter=",", header=",".join(FEATURES), comments="")
    env = {"VIGIL_MODEL_URI": str(tmp_path / "model.joblib"), "VIGIL_MODEL_NAME": "iris"}
    with serve_component("model", env, ready_path="/v2/health/ready") as url:
        monitor = monitor_from_dict(endpoint_monitor(url))
        plan, placement = local_plan(monitor, tmp_path, tmp_path / "w", 9000)
        assert plan.names == ["logger", "explainer"]
        LocalStack(plan, placement, say=lambda _: None).train()
    artifact = tmp_path / "w" / "artifacts" / "explainer"
    assert (artifact / "meta.dill").is_file() and (artifact / "explainer.dill").is_file()
