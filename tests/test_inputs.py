"""Named features, strings and missing values through every component (DESIGN §8).

Reference files with category strings and missing cells (`vigil.data.load_table`), the model
server answering named rows and strings (a model that refuses NaN: a 4xx with its message;
one that takes NaN: 200), chi-squared with an unseen category in its own bin, and on
loopback a `vigil up` stack (logger -> model -> drift and outlier) fed named rows with
strings and injected missing values: the skips are counted exactly, the rest is used, no
false drift, and a detector skipping most of its input is Degraded with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from tests.conftest import cloud_event
from tests.prom import free_port_range
from tests.servers import metric_value, serve_app
from vigil.data import DataError, complete_rows, load_table
from vigil.local import LocalStack, local_plan
from vigil.modelserver.app import create_app
from vigil.modelserver.settings import ModelServerSettings
from vigil.spec import load_monitor
from vigil_detectors.drift.statistics import fit_statistic

# -- a table with a string category: wine's first four measurements and a grape region ----------------------

NUMERIC = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash"]
FEATURES = [*NUMERIC, "region"]
REGIONS = ["north", "south", "east"]


def wine_table(seed: int = 0):
    """(rows with region codes, labels, the same rows with region strings): wine rows, a region drawn
    independently of them."""
    data = load_wine()
    x = data.data[:, :4]
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 3, len(x))
    coded = np.column_stack([x, region]).astype(np.float64)
    return coded, data.target, [[*map(float, r[:4]), REGIONS[int(r[4])]] for r in coded]


def named(rows_with_strings) -> list[dict]:
    return [dict(zip(FEATURES, r, strict=True)) for r in rows_with_strings]


# -- reference data ----------------------------------------------------------------------------------------------


def test_reference_csv_with_strings_and_missing_cells(tmp_path):
    coded, _, strings = wine_table()
    lines = [",".join(["id", *FEATURES])] + [",".join([str(i), *map(repr, r[:4]), r[4]])
                                               for i, r in enumerate(strings[:50])]
    lines[3] = lines[3].replace(REGIONS[int(coded[2, 4])], "")  # a missing category
    cells = lines[5].split(",")
    cells[2] = "NA"  # a missing number (malic_acid of row 4)
    lines[5] = ",".join(cells)
    (tmp_path / "ref.csv").write_text("\n".join(lines) + "\n")
    cats = {"region": REGIONS}
    with pytest.raises(DataError, match="2 missing"):
        load_table(tmp_path / "ref.csv", FEATURES, cats)
    x = load_table(tmp_path / "ref.csv", FEATURES, cats, missing="keep")
    want = coded[:50].copy()
    want[2, 4] = want[4, 1] = np.nan
    assert np.array_equal(x, want, equal_nan=True)
    # the numbers are bit for bit what the same text gives as JSON
    assert x[~np.isnan(x)].tobytes() == np.asarray(json.loads(json.dumps(want.tolist())))[~np.isnan(want)].tobytes()
    complete, dropped = complete_rows(x)
    assert dropped == 2 and complete.shape == (48, 5) and not np.isnan(complete).any()
    with pytest.raises(DataError, match=r"column region holds 'east' \(row \d+\), which is not one of"):
        load_table(tmp_path / "ref.csv", FEATURES, {"region": ["north", "south"]}, missing="keep")
    with pytest.raises(DataError, match="non-numeric values in column"):
        load_table(tmp_path / "ref.csv", FEATURES)  # strings without a value list


def test_reference_parquet_and_npy_with_categories(tmp_path):
    coded, _, strings = wine_table()
    frame = pd.DataFrame(strings[:30], columns=FEATURES)
    frame.loc[3, "region"] = None
    frame.loc[4, "ash"] = None
    frame.to_parquet(tmp_path / "ref.parquet")
    x = load_table(tmp_path / "ref.parquet", FEATURES, {"region": REGIONS}, missing="keep")
    want = coded[:30].copy()
    want[3, 4] = want[4, 2] = np.nan
    assert np.array_equal(x, want, equal_nan=True)
    # .npy holds numbers: a list of numbers maps them to codes; a list of strings takes codes
    grades = np.column_stack([coded[:10, 0], np.tile([10, 20, 40, 20, 10], 2)])
    np.save(tmp_path / "g.npy", grades)
    assert load_table(tmp_path / "g.npy", ["alcohol", "grade"], {"1": [10, 20, 40]})[:5, 1].tolist() == [0, 1, 2, 1, 0]
    np.save(tmp_path / "c.npy", coded[:10])
    assert np.array_equal(load_table(tmp_path / "c.npy", FEATURES, {"region": REGIONS}), coded[:10])


# -- drift: an unseen category in its own bin ----------------------------------------------------------------------


def test_chi2_counts_an_unseen_category_as_its_own_bin():
    coded, _, _ = wine_table()
    suite = fit_statistic(coded, categorical={4: 3})
    window = coded[:60].copy()
    window[:12, 4] = 3  # code k: the unseen bin
    result = suite.check(window)
    j = 4
    ref_counts = np.bincount(coded[:, 4].astype(int), minlength=4)
    win_counts = np.bincount(window[:, 4].astype(int), minlength=4)
    expected = chi2_contingency(np.array([ref_counts, win_counts]))
    assert result.p_values[j] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.detected and FEATURES[j] in [FEATURES[i] for i in np.nonzero(result.p_values < 0.01)[0]]


# -- the model server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    coded, y, _ = wine_table()
    hgb = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(coded, y)
    lr = LogisticRegression(max_iter=2000).fit(coded, y)
    joblib.dump(hgb, d / "hgb.joblib")
    joblib.dump(lr, d / "lr.joblib")
    cats = {"4": REGIONS}
    urls = {}
    with serve_app(create_app(ModelServerSettings(uri=str(d / "hgb.joblib"), name="hgb", feature_names=FEATURES,
                                                  categorical=cats))) as hgb_url, \
            serve_app(create_app(ModelServerSettings(uri=str(d / "lr.joblib"), name="lr", feature_names=FEATURES,
                                                     categorical=cats))) as lr_url:
        urls.update(hgb=hgb_url, lr=lr_url)
        yield urls, {"hgb": hgb, "lr": lr}


def test_model_server_takes_named_rows_and_strings(model_servers):
    urls, models = model_servers
    coded, _, strings = wine_table()
    rows = named(strings[:20])
    rows[0]["comment"] = "an extra key is not an error"
    for name in ("hgb", "lr"):
        want = models[name].predict(coded[:20]).tolist()
        v1 = httpx.post(f"{urls[name]}/v1/models/{name}:predict", json={"instances": rows})
        assert v1.status_code == 200, v1.text
        assert v1.json()["predictions"] == want
        v2 = {"inputs": [{"name": f, "datatype": "BYTES" if f == "region" else "FP64", "shape": [20],
                          "data": [r[f] for r in named(strings[:20])]} for f in reversed(FEATURES)]}
        out = httpx.post(f"{urls[name]}/v2/models/{name}/infer", json=v2).json()["outputs"]
        assert out[0]["data"] == want


def test_missing_and_unseen_reach_the_model_as_nan(model_servers):
    urls, models = model_servers
    coded, _, strings = wine_table()
    rows = named(strings[:4])
    rows[0]["alcohol"] = None
    del rows[1]["ash"]
    rows[2]["region"] = "west"  # unseen: a missing value to the model
    want_x = coded[:4].copy()
    want_x[0, 0] = want_x[1, 2] = want_x[2, 4] = np.nan
    r = httpx.post(f"{urls['hgb']}/v1/models/hgb:predict", json={"instances": rows})
    assert r.status_code == 200 and r.json()["predictions"] == models["hgb"].predict(want_x).tolist()
    # a model that refuses NaN: a 4xx with the model's own message, counted; the server keeps serving
    r = httpx.post(f"{urls['lr']}/v1/models/lr:predict", json={"instances": rows})
    assert r.status_code == 422 and r.json()["reason"] == "predict_failed" and "NaN" in r.json()["error"]
    assert metric_value(httpx.get(f"{urls['lr']}/metrics").text, "vigil_events_rejected_total",
                        reason="predict_failed") == 1
    assert httpx.post(f"{urls['lr']}/v1/models/lr:predict", json={"instances": named(strings[:1])}).status_code == 200


@pytest.mark.parametrize("row, reason", [
    ({"alcohol": "strong"}, "non_numeric"),
    ({"alcohol": float("inf")}, "non_numeric"),
    ({"region": 1.5}, "bad_category"),
])
def test_what_stays_a_400_at_the_model_server(model_servers, row, reason):
    urls, _ = model_servers
    _, _, strings = wine_table()
    body = json.dumps({"instances": [{**named(strings[:1])[0], **row}]})
    r = httpx.post(f"{urls['hgb']}/v1/models/hgb:predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["reason"] == reason, r.text


# -- live: vigil up, logger -> model -> drift and outlier --------------------------------------------------------

WINDOW = 100
ALL_MISSING = 40
MONITOR = f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata: {{name: inputs, namespace: test}}
spec:
  model: {{storageUri: model.joblib, format: sklearn, name: wine}}
  schema:
    featureNames: [{", ".join(FEATURES)}]
    categorical: {{region: [{", ".join(REGIONS)}]}}
  reference: {{storageUri: reference.csv}}
  detectors:
    drift: {{pValue: 0.05, window: {{size: {WINDOW}, mode: tumbling, maxAge: 10m}}}}
    outlier: {{epochs: 3, latentDim: 2}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs-stack")
    coded, y, strings = wine_table()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(coded))
    ref_idx, live_idx = order[:100], order[100:]
    joblib.dump(HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(coded, y), tmp / "model.joblib")
    lines = [",".join(FEATURES)] + [",".join([*map(repr, strings[i][:4]), strings[i][4]]) for i in ref_idx]
    lines.append(",".join(["", *map(repr, strings[0][1:4]), strings[0][4]]))  # one incomplete reference row
    (tmp / "reference.csv").write_text("\n".join(lines) + "\n")
    (tmp / "monitor.yaml").write_text(MONITOR)
    plan, placement = local_plan(load_monitor(tmp / "monitor.yaml"), tmp, tmp / "work", free_port_range(6))
    s = LocalStack(plan, placement, say=lambda _: None)
    s.train()  # outlier from the reference with strings and a missing cell: that row dropped, and said
    assert "100 rows x 5 features (1 row holding a missing value dropped)" in (s.logs / "train-outlier.log").read_text()
    s.start(timeout=240)
    try:
        yield s, [strings[i] for i in live_idx], coded[live_idx]
    finally:
        s.stop()


def _infer(client, urls, rows):
    r = client.post(f"{urls['logger']}/v1/models/wine:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _wait(what, get, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {value}"
        time.sleep(0.2)


@pytest.mark.slow
def test_named_strings_and_missing_through_the_stack(stack):
    s, live, coded = stack
    urls = s.component_urls()
    rng = np.random.default_rng(1)

    def clean(n):
        return named([live[i] for i in rng.integers(0, len(live), n)])

    def drift():
        return httpx.get(f"{urls['drift']}/status").json()

    def skipped(component):
        return metric_value(httpx.get(f"{urls[component]}/metrics").text, "vigil_instances_skipped_total",
                            reason="missing")

    with httpx.Client(timeout=30) as client:
        # named rows with category strings: predictions are the model's on the coded rows
        first = named(live[:10])
        assert _infer(client, urls, first) == joblib.load(s.workdir.parent / "model.joblib").predict(coded[:10]).tolist()
        for _ in range(19):
            _infer(client, urls, clean(10))
        status = _wait("two windows", drift, lambda d: d["drift"]["windows"] >= 2)
        assert status["drift"]["detected"] is False and status["instancesSkipped"] == {}

        # 10 events of 10 rows, 3 rows each holding a missing value (null, NaN, an absent key): the model
        # answers them all (HistGradientBoosting takes NaN), drift and outlier skip exactly those 30 rows
        injected = 0
        for _ in range(10):
            rows = clean(10)
            rows[0]["alcohol"] = None
            rows[4]["ash"] = float("nan")
            del rows[7]["region"]
            injected += 3
            r = client.post(f"{urls['logger']}/v1/models/wine:predict", content=json.dumps({"instances": rows}),
                            headers={"content-type": "application/json"})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 10
        _infer(client, urls, clean(30))  # 70 + 30 complete rows: window 3
        status = _wait("three windows", drift, lambda d: d["drift"]["windows"] >= 3)
        assert status["drift"]["detected"] is False  # skipping rows is no drift
        for component in ("drift", "outlier"):
            assert _wait(f"{component} skips", lambda c=component: skipped(c), lambda v: v == injected) == injected
        assert status["drift"]["instances"] == 3 * WINDOW
        assert status["recent"]["degraded"] is False
        outlier = httpx.get(f"{urls['outlier']}/status").json()
        assert outlier["outliers"]["seen"] == 3 * WINDOW  # every complete row scored once

        # events whose rows all hold a missing value, more of them than the 31 before: most input skipped ->
        # Degraded, with the reason
        for _ in range(ALL_MISSING):
            _infer(client, urls, [{"alcohol": 13.0}])
        for component in ("drift", "outlier"):
            _wait(f"{component} skips", lambda c=component: skipped(c), lambda v: v == injected + ALL_MISSING)
        recent = _wait("degraded", drift, lambda d: d["recent"]["degraded"])["recent"]
        assert recent["message"].startswith("drift skipped ") and "hold a missing value" in recent["message"]
    out = subprocess.run([sys.executable, "-m", "vigil", "status", "--workdir", str(s.workdir), "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    summary = json.loads(out.stdout)
    assert out.returncode != 0 and summary["phase"] == "Degraded"
    assert summary["components"]["drift"] == "Degraded" and summary["components"]["model"] == "Ready"


@pytest.mark.slow
def test_outlier_reply_keeps_a_skipped_rows_place(stack):
    s, live, _ = stack
    url = s.component_urls()["outlier"]
    rows = named(live[:3])
    rows[1]["malic_acid"] = None
    r = httpx.post(url + "/", **_event({"instances": rows}))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["instance_score"][1] is None and data["is_outlier"][1] is None
    assert all(isinstance(data["instance_score"][i], float) for i in (0, 2))


def _event(body):
    msg = cloud_event(body)
    return {"headers": msg.headers, "content": msg.body}


def test_vigil_baseline_reads_category_strings_and_counts_missing_cells(tmp_path):
    from vigil.baseline import load_baseline

    _, _, strings = wine_table()
    lines = [",".join(FEATURES)] + [",".join([*map(repr, r[:4]), r[4]]) for r in strings[:40]]
    lines[1] = ",".join(["NA", *lines[1].split(",")[1:]])
    lines[2] = ",".join([*lines[2].split(",")[:4], ""])
    (tmp_path / "reference.csv").write_text("\n".join(lines) + "\n")
    joblib.dump(LogisticRegression(max_iter=2000).fit(wine_table()[0], wine_table()[1]), tmp_path / "model.joblib")
    (tmp_path / "monitor.yaml").write_text(MONITOR)
    out = subprocess.run([sys.executable, "-m", "vigil", "baseline", str(tmp_path / "monitor.yaml"),
                          "--out", str(tmp_path / "bl")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    stats = {f.name: f for f in load_baseline(tmp_path / "bl").statistics.features}
    assert stats["alcohol"].missing_count == 1 and stats["region"].missing_count == 1
    assert stats["ash"].missing_count == 0 and stats["region"].count == 39


def test_reference_and_report_read_npy_and_refuse_non_numeric_alike(tmp_path):
    """`vigil.data.load_npy` is the one reader of a .npy file for the reference (`load_table`) and
    the report's current data (`load_current`): the same refusal, naming the file, from both."""
    from vigil.instances import InputSchema
    from vigil.report.current import load_current

    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    np.save(tmp_path / "x.npy", np.arange(4.0).reshape(2, 2))
    schema = InputSchema(feature_names=("a", "b"))
    for read in (lambda p: load_table(p, ["a", "b"]), lambda p: load_current(str(p), schema)):
        with pytest.raises(DataError, match=r"s\.npy: \.npy array has dtype <U1, expected numbers"):
            read(tmp_path / "s.npy")
    assert load_table(tmp_path / "x.npy", ["a", "b"]).tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert load_current(str(tmp_path / "x.npy"), schema).rows == 2
