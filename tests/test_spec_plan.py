"""The spec validates with errors that name the field; the plan decides components and settings."""

import json
from pathlib import Path

import pytest

from vigil import components
from vigil.local import LocalPlacement, local_plan
from vigil.plan import build_plan
from vigil.spec import SpecError, load_monitor, monitor_from_dict, parse_duration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def doc(**spec_overrides):
    spec = {
        "model": {"storageUri": "model.joblib"},
        "schema": {"featureNames": ["a", "b", "c"]},
        "reference": {"storageUri": "ref.csv"},
        "detectors": {"drift": {}, "metrics": {"classes": ["x", "y"]}, "outlier": {}, "explainer": {}},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "m1"}, "spec": spec}


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["spec"]["detectors"]["drift"].update(pValue=1.5), "spec.detectors.drift.pValue", "less than 1"),
    (lambda d: d["spec"]["detectors"]["drift"].update(window={"mode": "hopping"}), "spec.detectors.drift.window.mode",
     "tumbling"),
    (lambda d: d["spec"]["detectors"]["drift"].update(window={"maxAge": "soon"}), "spec.detectors.drift.window.maxAge",
     "duration"),
    (lambda d: d["spec"]["detectors"].update(quality={"window": {"maxAge": "soon"}}),
     "spec.detectors.quality.window.maxAge", "duration"),
    (lambda d: d["spec"]["detectors"].update(quality={"window": {"mode": "sliding"}}),
     "spec.detectors.quality.window.mode", "unknown field"),
    (lambda d: d["spec"]["model"].update(endpoint="http://x:8080"), "spec.model", "exactly one"),
    (lambda d: d["spec"]["model"].update(storageUri="ftp://x/m"), "spec.model.storageUri", "unsupported scheme"),
    (lambda d: d["spec"]["schema"].update(categorical={"zz": 3}), "spec.schema", "zz"),
    (lambda d: d["spec"].pop("reference"), "spec", "reference.storageUri is required"),
    (lambda d: d["spec"]["detectors"].update(outlyer={}), "spec.detectors.outlyer", "unknown field"),
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name", "pattern"),
])
def test_invalid_spec_names_the_field(mutate, field, words):
    d = doc()
    mutate(d)
    with pytest.raises(SpecError) as err:
        monitor_from_dict(d)
    assert err.value.field == field
    assert words in str(err.value)


def test_defaults_follow_design():
    m = monitor_from_dict(doc())
    d = m.spec.detectors
    assert (d.drift.p_value, d.drift.correction, d.drift.window.size, d.drift.window.mode) == (0.05, "bonferroni", 1000,
                                                                                               "tumbling")
    assert d.drift.window.max_age_seconds == 600
    assert (d.outlier.threshold_percentile, d.outlier.max_batch_size, d.outlier.max_batch_delay_ms) == (95, 64, 5)
    assert (m.spec.logger.mode, m.spec.logger.sample_rate, m.spec.logger.queue_size) == ("all", 1.0, 10000)
    assert m.model_name == "m1"


def test_durations():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("10m") == 600
    assert parse_duration(3) == 3.0
    with pytest.raises(ValueError):
        parse_duration("ten minutes")


def test_local_plan_ports_env_and_training(tmp_path):
    m = monitor_from_dict(doc())
    plan, placement = local_plan(m, tmp_path, tmp_path / "work", 9000)
    assert plan.names == ["logger", "model", "outlier", "drift", "metrics", "explainer"]
    for c in plan.components:
        assert c.port == 9000 + components.get(c.name).port_offset
        assert c.command == ["vigil", "serve", c.name, "--port", str(c.port)]
    logger = plan.get("logger").env
    assert logger["VIGIL_LOGGER_UPSTREAM"] == "http://127.0.0.1:9001"
    sinks = {s["name"]: s for s in json.loads(logger["VIGIL_LOGGER_SINKS"])}
    # the explainer only gets events when it explains a sampled share of them
    assert set(sinks) == {"outlier", "drift", "metrics"}
    assert sinks["metrics"]["types"] == ["response", "feedback"]
    assert sinks["drift"]["url"] == "http://127.0.0.1:9003"
    drift = plan.get("drift").env
    assert drift["VIGIL_DRIFT_REFERENCE"] == str(tmp_path / "ref.csv")  # fitted at start-up
    assert "VIGIL_DRIFT_ARTIFACT" not in drift
    assert json.loads(drift["VIGIL_DRIFT_FEATURE_NAMES"]) == ["a", "b", "c"]
    steps = {s.component: s for s in plan.training}
    assert set(steps) == {"outlier", "explainer"}
    assert steps["explainer"].model_uri == "model.joblib"
    assert plan.get("outlier").env["VIGIL_OUTLIER_ARTIFACT"] == str(tmp_path / "work" / "artifacts" / "outlier")


def test_endpoint_monitor_has_no_model_component(tmp_path):
    d = doc(model={"endpoint": "http://my-model:8080/"})
    d["spec"]["detectors"]["explainer"]["storageUri"] = "expl"
    plan, _ = local_plan(monitor_from_dict(d), tmp_path, tmp_path, 8080)
    assert "model" not in plan.names
    assert plan.get("logger").env["VIGIL_LOGGER_UPSTREAM"] == "http://my-model:8080"
    assert plan.get("explainer").env["VIGIL_EXPLAINER_MODEL_URL"] == "http://my-model:8080"


def test_digest_changes_only_for_the_changed_component(tmp_path):
    a, _ = local_plan(monitor_from_dict(doc()), tmp_path, tmp_path, 8080)
    d = doc()
    d["spec"]["detectors"]["drift"] = {"pValue": 0.01}
    b, _ = local_plan(monitor_from_dict(d), tmp_path, tmp_path, 8080)
    changed = {c.name for c in a.components if c.digest() != b.get(c.name).digest()}
    assert changed == {"drift"}


def test_cluster_only_storage_is_refused_locally(tmp_path):
    m = load_monitor(EXAMPLES / "iris-monitor.yaml")
    with pytest.raises(SpecError, match="only in a cluster"):
        build_plan(m, LocalPlacement(tmp_path, tmp_path))
