"""The baseline and the quality detector, over real HTTP on loopback with real CloudEvents.

Covered: the baseline's statistics equal numpy's on the reference and its histograms are
the drift bins; the files round-trip and a hand-edited file that does not validate names
the field; a clean window of held-out scikit-learn rows (iris, wine, breast_cancer,
diabetes) gives no violation in the live service (and none across many random splits in
the pure check); windows with injected missing values, out-of-range values, unseen
categories, wrong types, extra keys and an absent column give exactly those violations at
the injected ratios (report, /status, metrics, history); maxAge; disabled and edited
checks; restart keeps the last report; bad bodies are counted 4xx.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn import datasets

from tests.conftest import cloud_event, serve_ready
from tests.servers import metric_value, wait_until
from vigil.baseline import BaselineError, compute_baseline, load_baseline
from vigil.instances import InputSchema, decode_table
from vigil_detectors.drift.statistics.bins import reference_bins
from vigil_detectors.quality.checks import check_window, compile_constraints
from vigil_detectors.quality.service import create_app
from vigil_detectors.quality.settings import QualitySettings

LOADERS = {"iris": datasets.load_iris, "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
           "diabetes": datasets.load_diabetes}


def split(name: str, seed: int, held: float = 0.3):
    """A shuffled (reference, held-out) split of a scikit-learn dataset, with safe feature names."""
    data = LOADERS[name]()
    x = np.asarray(data.data, dtype=np.float64)
    names = [str(n).replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_") for n in data.feature_names]
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - held))
    return names, x[order[:cut]], x[order[cut:]]


def write_csv(path: Path, names, x) -> str:
    pd.DataFrame(x, columns=names).to_csv(path, index=False)
    return str(path)


@contextmanager
def quality_service(**settings):
    with serve_ready(create_app(QualitySettings(**settings))) as client:
        yield client


def post(client: httpx.Client, body) -> httpx.Response:
    msg = cloud_event(body)
    return client.post("/", headers=msg.headers, content=msg.body)


def named_rows(names, x):
    return [{n: float(v) for n, v in zip(names, row, strict=True)} for row in x]


# -- the baseline ---------------------------------------------------------------------------------

def test_baseline_statistics_match_numpy_and_the_drift_bins(tmp_path):
    names, ref, _ = split("wine", 0)
    schema = InputSchema.from_settings(names)
    b = compute_baseline(ref, schema)
    assert b.statistics.dataset.item_count == len(ref)
    for j, f in enumerate(b.statistics.features):
        col = ref[:, j]
        assert (f.count, f.missing_count) == (len(col), 0)
        assert f.min == col.min() and f.max == col.max()
        assert f.mean == pytest.approx(col.mean()) and f.std == pytest.approx(col.std(ddof=1))
        assert f.quantiles["0.5"] == pytest.approx(np.median(col))
        assert f.distinct_count == len(np.unique(col))
        assert f.histogram == reference_bins(col, False).to_json()
        assert f.top_values[0].count == np.unique(col, return_counts=True)[1].max()
    kinds = {f.name: f.inferred_type for f in b.statistics.features}
    assert kinds["magnesium"] == "integer" and kinds["proline"] == "integer" and kinds["alcohol"] == "numeric"
    c = b.constraints.features[names.index("magnesium")]
    assert c.data_type.type == "integer" and c.range.min == ref[:, names.index("magnesium")].min()
    assert c.range.reference_count == len(ref) and c.completeness.min == 1.0

    b.write(tmp_path / "bl")
    again = load_baseline(tmp_path / "bl")
    assert again == b
    stats = json.loads((tmp_path / "bl" / "statistics.json").read_text())
    assert stats["features"][0]["histogram"]["edges"] == b.statistics.features[0].histogram["edges"]


def test_baseline_of_categorical_and_missing_values():
    x = np.array([[0, 1.5], [1, np.nan], [1, 2.5], [2, 3.0]], dtype=float)
    schema = InputSchema.from_settings(["color", "size"], {"0": ["red", "green", "blue"]})
    b = compute_baseline(x, schema)
    color, size = b.statistics.features
    assert color.inferred_type == "categorical" and color.min is None
    assert color.top_values[0].value == "green" and color.top_values[0].count == 2
    assert color.histogram["labels"] == ["red", "green", "blue"]
    assert color.histogram["counts"] == reference_bins(x[:, 0], True).to_json()["counts"]
    assert (size.count, size.missing_count) == (3, 1)
    cons = b.constraints.features
    assert cons[0].categories.values == ["red", "green", "blue"] and cons[0].range is None
    assert cons[1].completeness.min == 0.75


def test_a_broken_baseline_file_names_the_field(tmp_path):
    names, ref, _ = split("iris", 0)
    compute_baseline(ref, InputSchema.from_settings(names)).write(tmp_path)
    path = tmp_path / "constraints.json"
    doc = json.loads(path.read_text())
    doc["features"][1]["range"]["min"] = "low"
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match=r"constraints.json: features.1.range.min"):
        load_baseline(tmp_path)
    doc["features"][1]["range"]["min"] = 1.0
    doc["features"][1]["completness"] = {"enabled": True}
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="unknown field"):
        load_baseline(tmp_path)
    path.write_text("{not json")
    with pytest.raises(BaselineError, match="not valid JSON"):
        load_baseline(tmp_path)
    with pytest.raises(BaselineError, match="not found"):
        load_baseline(tmp_path / "nowhere")


# -- no false alarms ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LOADERS))
def test_clean_held_out_rows_give_no_violation_in_the_live_service(name, tmp_path):
    names, ref, held = split(name, 1)
    csv = write_csv(tmp_path / "ref.csv", names, ref)
    with quality_service(reference=csv, feature_names=names, window_size=len(held), max_age_seconds=0,
                         state_dir=str(tmp_path / "state")) as client:
        for start in range(0, len(held), 10):
            assert post(client, {"instances": named_rows(names, held[start:start + 10])}).status_code in (200, 202)
        status = client.get("/status").json()["quality"]
        assert status["windows"] == 1
        assert status["violations"] == 0, status["report"]["violations"]
        assert status["featuresViolated"] == []
        assert status["report"]["instances"] == len(held)
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "vigil_quality_instances_total") == len(held)
        assert metric_value(metrics, "vigil_quality_window_violations") == 0
    assert (tmp_path / "state" / "baseline" / "constraints.json").exists()  # profiled, and kept to look at


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_clean_windows_across_many_splits_give_no_violation(name):
    """The verdict rule on 25 random splits per dataset, windows of 30 % of the rows."""
    for seed in range(25):
        names, ref, held = split(name, 100 + seed)
        schema = InputSchema.from_settings(names)
        constraints = compute_baseline(ref, schema).constraints
        report = check_window(decode_table({"instances": held.tolist()}, schema, strict=False), constraints,
                              feature_names=names)
        assert report.violations == [], (seed, report.violations)


# -- injected violations --------------------------------------------------------------------------

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture()
def iris_with_color(tmp_path):
    """Iris plus a categorical 'color' (codes in the reference file, strings in requests)."""
    data = datasets.load_iris()
    x = np.column_stack([data.data, data.target]).astype(float)
    names = [*IRIS, "color"]
    return names, x, write_csv(tmp_path / "ref.csv", names, x)


COLORS = ["red", "green", "blue"]


def iris_rows(names, x):
    rows = named_rows(names, x)
    for r in rows:
        r["color"] = COLORS[int(r["color"])]
    return rows


def test_injected_violations_are_found_exactly_at_their_ratios(iris_with_color, tmp_path):
    names, x, csv = iris_with_color
    rng = np.random.default_rng(3)
    window = x[rng.choice(len(x), 100, replace=False)]  # reference rows: in range by construction
    rows = iris_rows(names, window)
    for r in rows[0:10]:       # 10 % missing petal_width (null) ...
        r["petal_width"] = None
    for r in rows[10:13]:      # ... and 3 % absent (a missing value too)
        del r["petal_width"]
    for r in rows[20:40]:      # 20 % out of range
        r["sepal_length"] = 100.0
    for r in rows[40:45]:      # 5 % unseen category
        r["color"] = "purple"
    for r in rows[50:57]:      # 7 % extra keys
        r["temperature"] = 21.5
    for r in rows[60:64]:      # 4 % wrong type
        r["petal_length"] = "long"
    settings = dict(reference=csv, feature_names=names, categorical={"4": COLORS}, window_size=100,
                    max_age_seconds=0, state_dir=str(tmp_path / "state"))
    with quality_service(**settings) as client:
        replies = [post(client, {"instances": rows[i:i + 25]}) for i in range(0, 100, 25)]
        assert [r.status_code for r in replies] == [202, 202, 202, 200]  # the last event completed the window
        report = replies[-1].json()["quality"]["report"]
        found = {(v["feature_name"], v["constraint_check_type"]): v["ratio"] for v in report["violations"]}
        assert found == {("petal_width", "completeness"): 0.13, ("sepal_length", "range"): 0.20,
                         ("color", "categories"): 0.05, ("_extra", "extraColumns"): 0.07,
                         ("petal_length", "dataType"): 0.04}
        assert report["extraColumns"] == {"temperature": 7}
        status = client.get("/status").json()["quality"]
        assert status["violations"] == 5
        assert set(status["featuresViolated"]) == {"petal_width", "sepal_length", "color", "_extra", "petal_length"}
        m = client.get("/metrics").text
        assert metric_value(m, "vigil_quality_violations_total", feature="sepal_length", check="range") == 20
        assert metric_value(m, "vigil_quality_violations_total", feature="petal_width", check="completeness") == 13
        assert metric_value(m, "vigil_quality_violations_total", feature="_extra", check="extraColumns") == 7
        assert metric_value(m, "vigil_quality_violation_ratio", feature="color", check="categories") == 0.05
        assert metric_value(m, "vigil_quality_violation_ratio", feature="sepal_width", check="range") == 0.0
        assert metric_value(m, "vigil_quality_instances_total") == 100

        # a window where sepal_width is absent from every instance: missingColumns (and completeness)
        clean = iris_rows(names, window)
        for r in clean:
            del r["sepal_width"]
        reply = post(client, {"instances": clean})
        found = {(v["feature_name"], v["constraint_check_type"]): v["ratio"]
                 for v in reply.json()["quality"]["report"]["violations"]}
        assert found == {("sepal_width", "missingColumns"): 1.0, ("sepal_width", "completeness"): 1.0}

        history = client.get("/history", params={"limit": 5}).json()["checks"]
        assert [h["window"] for h in history] == [1, 2] and history[0]["violations"] == 5
        assert client.get("/history", params={"limit": -1}).status_code == 400
    # a restart serves the last report from the history
    with quality_service(**settings) as client:
        status = client.get("/status").json()["quality"]
        assert status["window"] == 2 and status["violations"] == 2
        assert len(client.get("/history").json()["checks"]) == 2


def test_a_batch_crossing_windows_is_split_and_max_age_reports_a_quiet_stream(iris_with_color):
    names, x, csv = iris_with_color
    rows = iris_rows(names, x[:70])
    for r in rows[:5]:
        r["sepal_length"] = -5.0
    with quality_service(reference=csv, feature_names=names, categorical={"4": COLORS}, window_size=50,
                         max_age_seconds=0.3) as client:
        reply = post(client, {"instances": rows})  # 50 + 20: one full window, 20 left over
        report = reply.json()["quality"]["report"]
        assert report["instances"] == 50 and report["counts"]["sepal_length"]["range"]["count"] == 5
        status = wait_until(lambda: (s := client.get("/status").json()["quality"])["windows"] == 2 and s,
                            timeout=10, what="maxAge report")
        assert status["trigger"] == "max_age" and status["report"]["instances"] == 20 and status["violations"] == 0


def test_disabled_and_edited_checks(iris_with_color, tmp_path):
    names, x, _ = iris_with_color
    schema = InputSchema.from_settings(names, {"4": COLORS})
    baseline = compute_baseline(x, schema)
    cons = baseline.constraints
    rows = iris_rows(names, x[:100])
    rows[0]["sepal_length"] = 7.95  # just beyond the reference max (7.9)
    rows[1]["color"] = "purple"
    decoded = decode_table({"instances": rows}, schema, strict=False)

    def found():
        report = check_window(decoded, compile_constraints(cons, names, dict(schema.categorical)))
        return {(v["feature_name"], v["constraint_check_type"]) for v in report.violations}

    assert found() == {("color", "categories")}  # one value beyond the reference range is within the noise
    cons.features[0].range.reference_count = None  # an edited range: every value beyond it counts
    assert found() == {("color", "categories"), ("sepal_length", "range")}
    cons.features[0].range.tolerance = 0.1  # ... unless within the tolerance
    assert found() == {("color", "categories")}
    # constraints narrow the schema's list, never widen it: a value the schema does not list stays unseen
    cons.features[4].categories.values = ["red", "green", "blue", "purple"]
    assert found() == {("color", "categories")}
    cons.features[4].categories.values = ["red", "blue"]  # green no longer allowed: 1 purple + the green rows
    report = check_window(decoded, compile_constraints(cons, names, dict(schema.categorical)))
    green = sum(r["color"] == "green" for r in rows)
    assert green > 0 and report.checks[("color", "categories")]["count"] == 1 + green
    cons.features[4].categories.enabled = False
    assert found() == set()
    baseline.write(tmp_path / "edited")
    with quality_service(baseline=str(tmp_path / "edited"), feature_names=names, categorical={"4": COLORS},
                         window_size=100, max_age_seconds=0) as client:
        report = [post(client, {"instances": rows[i:i + 50]}) for i in (0, 50)][-1].json()["quality"]["report"]
        assert report["violations"] == []
        assert client.get("/status").json()["quality"]["baseline"] == str(tmp_path / "edited")


def test_bad_bodies_are_counted_4xx_and_not_checked(iris_with_color):
    names, x, csv = iris_with_color
    with quality_service(reference=csv, feature_names=names, categorical={"4": COLORS}, window_size=10,
                         max_age_seconds=0) as client:
        for body in ({"nothing": 1}, [1, 2], {"instances": "x"}):
            r = post(client, body)
            assert 400 <= r.status_code < 500 and "error" in r.json()
        # what strict decoding refuses, quality counts: a short row, infinity as a string, nested values
        r = post(client, {"instances": [[5.1, 3.5], [5.1, 3.5, 1.4, 0.2, "red"]]})
        assert r.status_code == 202
        status = client.get("/status").json()
        assert status["events"]["rejected"] == 3 and status["quality"]["instances"] == 2


def test_missing_baseline_and_reference_is_reported_not_ready():
    with serve_ready_or_not(QualitySettings(feature_names=["a"])) as (client, ready):
        assert not ready
        assert "VIGIL_QUALITY_BASELINE" in client.get("/status").json()["error"]


@contextmanager
def serve_ready_or_not(settings):
    from tests.servers import serve_app

    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        wait_until(lambda: client.get("/readyz").json()["status"] != "loading", timeout=20)
        yield client, client.get("/readyz").status_code == 200


# -- spec, plan, CLI ----------------------------------------------------------------------------------

def test_the_checks_import_without_fastapi_or_tensorflow():
    import subprocess
    import sys

    code = ("import sys, vigil.baseline, vigil_detectors.quality.checks\n"
            "print(sorted(m for m in ('fastapi', 'starlette', 'tensorflow', 'alibi_detect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def monitor(tmp_path: Path, **spec) -> Path:
    import yaml

    names, ref, _ = split("iris", 0)
    write_csv(tmp_path / "ref.csv", names, ref)
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "iris"},
           "spec": {"model": {"storageUri": "model.joblib"}, "schema": {"featureNames": names},
                    "reference": {"storageUri": "ref.csv"}, "detectors": {"quality": {"window": {"size": 50}}},
                    **spec}}
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_plan_gives_quality_base_plus_six_and_its_baseline(tmp_path):
    from vigil.local import local_plan
    from vigil.spec import SpecError, load_monitor, monitor_from_dict

    m = load_monitor(monitor(tmp_path))
    plan, _ = local_plan(m, tmp_path, tmp_path / "work", 9000)
    q = plan.get("quality")
    assert q.port == 9006
    assert q.env["VIGIL_QUALITY_REFERENCE"] == str(tmp_path / "ref.csv") and "VIGIL_QUALITY_BASELINE" not in q.env
    assert q.env["VIGIL_QUALITY_WINDOW_SIZE"] == "50" and q.env["VIGIL_QUALITY_MAX_AGE_SECONDS"] == "600.0"
    assert q.env["VIGIL_QUALITY_STATE_DIR"] == str(tmp_path / "work" / "state" / "quality")
    sinks = {s["name"]: s for s in json.loads(plan.get("logger").env["VIGIL_LOGGER_SINKS"])}
    assert sinks["quality"] == {"name": "quality", "url": "http://127.0.0.1:9006", "types": ["request"]}
    assert plan.training == []  # profiled by the service at start-up, no training step

    m = load_monitor(monitor(tmp_path, baseline={"storageUri": "edited"}))
    q = local_plan(m, tmp_path, tmp_path / "work", 9000)[0].get("quality")
    assert q.env["VIGIL_QUALITY_BASELINE"] == str(tmp_path / "edited") and "VIGIL_QUALITY_REFERENCE" not in q.env
    assert str(tmp_path / "edited") in q.settings.baseline

    doc = m.model_dump(by_alias=True, exclude_none=True)
    doc["spec"].pop("reference")
    doc["spec"]["baseline"] = {}
    with pytest.raises(SpecError, match="profile the quality baseline"):
        monitor_from_dict(doc)
    doc["spec"]["detectors"]["quality"]["window"] = {"size": 0}
    doc["spec"]["baseline"] = {"storageUri": "edited"}
    with pytest.raises(SpecError) as err:
        monitor_from_dict(doc)
    assert err.value.field == "spec.detectors.quality.window.size"


def test_vigil_baseline_cli(tmp_path):
    import subprocess
    import sys

    path = monitor(tmp_path)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "vigil", "baseline", *args], capture_output=True, text=True,
                              timeout=120)

    out = run(str(path), "--out", str(tmp_path / "bl"))
    assert out.returncode == 0, out.stderr
    assert "profiling" in out.stdout and "4 features (4 numeric)" in out.stdout
    b = load_baseline(tmp_path / "bl")
    assert [f.name for f in b.statistics.features] == split("iris", 0)[0]
    again = run(str(path), "--out", str(tmp_path / "bl"))
    assert again.returncode == 1 and "--force" in again.stderr
    assert run(str(path), "--out", str(tmp_path / "bl"), "--force").returncode == 0
    (tmp_path / "bad.yaml").write_text("kind: ModelMonitor\nmetadata: {name: x}\nspec: {model: {}}\n")
    bad = run(str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "invalid ModelMonitor" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "ref.csv").write_text("nothing,here\n1,2\n")
    broken = run(str(path), "--out", str(tmp_path / "bl2"))
    assert broken.returncode == 2 and "missing column" in broken.stderr and "Traceback" not in broken.stderr


# -- Kubernetes -------------------------------------------------------------------------------------

def test_operator_renders_the_quality_pod_and_lifts_its_status():
    import kubernetes_validate

    from tests.test_operator_manifests import (
        _claims,
        _init,
        _mounts,
        converged,
        deployment_state,
        example,
        pod_spec,
        render,
    )
    from vigil_operator.config import measured_resources
    from vigil_operator.placement import resolve
    from vigil_operator.status import compose

    doc = example()
    doc["spec"]["detectors"] = {"quality": {"window": {"size": 500}}}
    plan, _, rendered = render(doc)
    for obj in rendered.all():
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, "1.32", strict=True)
    dep = rendered.deployments["quality"]
    # profiled from the reference its init container copied in, no training Job; its own state claim, one pod
    assert "quality" not in rendered.jobs
    assert _claims(_mounts(dep)) == {"iris-quality-state": False} and dep["spec"]["strategy"] == {"type": "Recreate"}
    fetch = _init(dep, "fetch")["command"]
    cm = next(o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "iris-quality")
    reference = resolve("pvc://models/iris/reference.csv").path
    assert cm["data"]["VIGIL_QUALITY_REFERENCE"] == reference and fetch[fetch.index(reference) - 1].endswith(
        "/pvc/models/iris/reference.csv")  # the pod's own copy of the reference, made by its init container
    assert cm["data"]["VIGIL_QUALITY_STATE_DIR"] == "/mnt/vigil/state"
    assert pod_spec(dep)["containers"][0]["resources"] == measured_resources()["quality"]
    sinks = json.loads(plan.get("logger").env["VIGIL_LOGGER_SINKS"])
    assert [s["name"] for s in sinks] == ["quality"] and sinks[0]["types"] == ["request"]

    deps = {c: deployment_state(True) for c in ("logger", "model", "quality")}
    answers = {c: {"component": c, "ready": True} for c in deps}
    answers["quality"]["quality"] = {"violations": 2, "featuresViolated": ["age", "_extra"],
                                     "lastCheck": "2026-01-01T00:00:00.000Z", "windows": 7, "report": {}}
    status = compose(converged(doc, deps), answers, {}, 1)
    assert status["quality"] == {"violations": 2, "featuresViolated": ["age", "_extra"],
                                 "lastCheck": "2026-01-01T00:00:00.000Z"}


def test_crd_has_the_quality_printer_column_and_status():
    import yaml

    crd = yaml.safe_load((Path(__file__).resolve().parents[1] / "crds" / "modelmonitors.vigil.dev.yaml").read_text())
    version = crd["spec"]["versions"][0]
    column = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Quality")
    assert column["jsonPath"] == ".status.quality.violations" and column["priority"] == 1
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["quality"]["properties"]
    assert set(status) == {"violations", "featuresViolated", "lastCheck"}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(spec["detectors"]["properties"]["quality"]["properties"]["window"]["properties"]) == {"size", "maxAge"}
    assert "storageUri" in spec["baseline"]["properties"]


def test_vigil_status_table_shows_quality():
    from vigil.status import format_table, summarize

    status = summarize({"quality": {"component": "quality", "ready": True,
                                    "quality": {"violations": 1, "featuresViolated": ["age"], "lastCheck": "t"}}}, {})
    assert "QUALITY    violations=1  features=age  last=t" in format_table(status)


def test_vigil_validate_reads_the_baseline(tmp_path):
    from vigil.spec import load_monitor
    from vigil.validate import validate

    names, ref, _ = split("iris", 0)
    path = monitor(tmp_path, baseline={"storageUri": "bl"})

    def problems():
        return [p for p in validate(load_monitor(path), tmp_path, check_ports=False)[0] if "baseline" in p]

    assert problems() and "statistics.json: not found" in problems()[0]
    compute_baseline(ref, InputSchema.from_settings(names)).write(tmp_path / "bl")
    assert problems() == []
    doc = json.loads((tmp_path / "bl" / "constraints.json").read_text())
    doc["features"][0]["completeness"]["min"] = 2
    (tmp_path / "bl" / "constraints.json").write_text(json.dumps(doc))
    (line,) = problems()
    assert line.startswith("spec.baseline.storageUri: ") and "features.0.completeness.min" in line


def test_a_clean_restart_continues_the_partial_window_once(iris_with_color, tmp_path):
    names, x, csv = iris_with_color
    rows = iris_rows(names, x[:100])
    for r in rows[:8]:
        r["sepal_width"] = None
    settings = dict(reference=csv, feature_names=names, categorical={"4": COLORS}, window_size=100,
                    max_age_seconds=0, state_dir=str(tmp_path / "state"))
    with quality_service(**settings) as client:
        assert post(client, {"instances": rows[:40]}).status_code == 202
    assert (tmp_path / "state" / "window.json").exists()
    with quality_service(**settings) as client:
        assert client.get("/status").json()["quality"]["fill"] == 40
        assert not (tmp_path / "state" / "window.json").exists()  # taken: a crash now cannot count it twice
        report = post(client, {"instances": rows[40:]}).json()["quality"]["report"]
        assert report["instances"] == 100 and report["counts"]["sepal_width"]["completeness"]["count"] == 8


@pytest.mark.slow
def test_vigil_up_feeds_quality_through_the_logger(tmp_path):
    """`vigil up`'s backend: logger, model and quality as processes; inferences through the logger reach quality."""
    import asyncio

    import joblib
    import yaml
    from sklearn.linear_model import LogisticRegression

    from tests.prom import free_port_range
    from vigil.events import v2_request
    from vigil.local import LocalStack, local_plan
    from vigil.spec import load_monitor
    from vigil.status import poll, summarize

    data = datasets.load_iris()
    joblib.dump(LogisticRegression(max_iter=1000).fit(data.data, data.target), tmp_path / "model.joblib")
    rng = np.random.default_rng(0)
    write_csv(tmp_path / "reference.csv", IRIS, data.data[rng.integers(0, 150, 500)] + rng.normal(0, 0.05, (500, 4)))
    doc = {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "q", "namespace": "test"},
           "spec": {"model": {"storageUri": "model.joblib", "format": "sklearn", "name": "iris"},
                    "schema": {"featureNames": IRIS}, "reference": {"storageUri": "reference.csv"},
                    "detectors": {"quality": {"window": {"size": 100}}}}}
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(doc))
    plan, placement = local_plan(load_monitor(tmp_path / "monitor.yaml"), tmp_path, tmp_path / "work", free_port_range(7))
    assert plan.names == ["logger", "model", "quality"]
    stack = LocalStack(plan, placement, say=lambda _: None)
    stack.start(timeout=120)
    try:
        urls = stack.component_urls()
        rows = data.data[rng.integers(0, 150, 100)].copy()
        rows[:10, 0] = 40.0  # ten flowers with an impossible sepal length: the model still answers
        with httpx.Client(timeout=30) as client:
            for i in range(0, 100, 10):
                r = client.post(f"{urls['logger']}/v2/models/iris/infer", json=v2_request(rows[i:i + 10]))
                assert r.status_code == 200, r.text
            quality = wait_until(lambda: (q := client.get(f"{urls['quality']}/status").json()["quality"])["windows"]
                                 and q, timeout=30, what="a quality window")
        found = {(v["feature_name"], v["constraint_check_type"]): v["count"] for v in quality["report"]["violations"]}
        assert list(found) == [("sepal_length", "range")] and found[("sepal_length", "range")] >= 10
        status = summarize(asyncio.run(poll(urls)), {})
        assert status["quality"]["violations"] == 1 and status["quality"]["featuresViolated"] == ["sepal_length"]
    finally:
        stack.stop()
