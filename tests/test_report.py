"""`vigil report`: the HTML drift report agrees with the live drift service, is self-contained, and renders.

Iris from scikit-learn: 100 rows are the reference, the other 50 the current data —
unshifted (stationary: nothing may drift) and with petal_length shifted (drift there, and
only where the live service sees it). The live service is the drift component `vigil up`
would run (`vigil serve drift` with the plan's own environment), fed the same rows as
binary-mode CloudEvents; its verdicts are compared with the report's ``data-verdict``
attributes. Headless Chromium (Debian's ``chromium``) renders the page to a PNG.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.datasets import load_iris

from tests.conftest import cloud_event
from tests.servers import serve_component
from vigil.cli import main
from vigil.local import local_plan
from vigil.report import build_report
from vigil.spec import load_monitor

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MONITOR = """apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata: {name: iris-report}
spec:
  model: {storageUri: model.joblib, format: sklearn, name: iris}
  schema:
    featureNames: [sepal_length, sepal_width, petal_length, petal_width]
  reference: {storageUri: reference.csv}
  detectors:
    drift: {type: ks, statistics: {petal_width: hellinger}, window: {size: 50, maxAge: 0s}}
    quality: {window: {size: 50, maxAge: 0s}}
"""


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    """A monitor directory: reference.csv, stationary.csv, shifted.csv, monitor.yaml."""
    d = tmp_path_factory.mktemp("iris")
    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    order = np.random.default_rng(0).permutation(len(frame))
    frame.iloc[order[:100]].to_csv(d / "reference.csv", index=False)
    current = frame.iloc[order[100:]].copy()
    current.to_csv(d / "stationary.csv", index=False)
    current["petal_length"] += 1.5
    current.to_csv(d / "shifted.csv", index=False)
    (d / "monitor.yaml").write_text(MONITOR)
    return d


class _Rows(HTMLParser):
    """data-feature -> data-verdict (drift rows), data-quality-feature -> data-quality; every src/href value."""

    def __init__(self):
        super().__init__()
        self.verdicts: dict[str, str] = {}
        self.quality: dict[str, str] = {}
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "data-feature" in a:
            self.verdicts[a["data-feature"]] = a["data-verdict"]
        if "data-quality-feature" in a:
            self.quality[a["data-quality-feature"]] = a["data-quality"]
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def parse(html: str) -> _Rows:
    p = _Rows()
    p.feed(html)
    return p


def run_report(iris: Path, current: str, out: Path, capsys) -> str:
    code = main(["report", "-m", str(iris / "monitor.yaml"), "--current", str(iris / current), "-o", str(out),
                 "--workdir", str(iris / ".vigil")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out.resolve()}" in captured.out
    return out.read_text()


def live_verdicts(url: str, rows: np.ndarray) -> dict[str, bool]:
    """Feed `rows` (one window) as request events of 10 rows; the drifted flag per feature of that window's check."""
    block = None
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, len(rows), 10):
            msg = cloud_event({"instances": rows[i:i + 10].tolist()})
            r = client.post("/", headers=dict(msg.headers), content=msg.body)
            assert r.status_code in (200, 202), r.text
            if r.status_code == 200 and r.content:
                block = r.json()["drift"]
    assert block is not None, "the window of 50 rows was not checked"
    assert block["checkedInstances"] == len(rows)
    return {name: f["drifted"] for name, f in block["features"].items()}


def test_report_names_the_features_the_live_drift_service_flags(iris, tmp_path, capsys):
    shifted = pd.read_csv(iris / "shifted.csv")[FEATURES].to_numpy()
    stationary = pd.read_csv(iris / "stationary.csv")[FEATURES].to_numpy()
    html_shifted = parse(run_report(iris, "shifted.csv", tmp_path / "shifted.html", capsys)).verdicts
    html_stationary = parse(run_report(iris, "stationary.csv", tmp_path / "stationary.html", capsys)).verdicts

    # the drift service vigil up would start for this monitor: its command, with the plan's environment
    plan, _ = local_plan(load_monitor(iris / "monitor.yaml"), iris, tmp_path / "work", 0)
    drift = plan.get("drift")
    assert drift is not None
    with serve_component("drift", env=drift.env) as url:
        live_shifted = live_verdicts(url, shifted)
        live_stationary = live_verdicts(url, stationary)

    as_verdicts = {name: "drift" if d else "ok" for name, d in live_shifted.items()}
    assert html_shifted == as_verdicts
    assert html_shifted["petal_length"] == "drift"  # the shifted feature, and only it
    assert [n for n, v in html_shifted.items() if v == "drift"] == ["petal_length"]
    # no false alarm on stationary data, in the report or the service
    assert html_stationary == {name: "ok" for name in FEATURES}
    assert not any(live_stationary.values())


def test_report_scores_are_the_drift_checks_on_the_current_rows(iris, tmp_path):
    report = build_report(str(iris / "monitor.yaml"), str(iris / "shifted.csv"), tmp_path)
    ref = pd.read_csv(iris / "reference.csv")[FEATURES].to_numpy()
    cur = pd.read_csv(iris / "shifted.csv")[FEATURES].to_numpy()
    by_name = {f.name: f for f in report.drift.features}
    assert report.reference_rows == 100 and report.current_rows == 50 and report.drift.checked_rows == 50
    for j, name in enumerate(FEATURES[:3]):  # KS: the D statistic and p-value of scipy's two-sample test
        expected = ks_2samp(ref[:, j], cur[:, j], method="asymp")  # as alibi-detect
        assert by_name[name].test == "ks"
        assert by_name[name].score == pytest.approx(expected.statistic, abs=1e-12)
        assert by_name[name].p_value == pytest.approx(expected.pvalue, rel=1e-6)
        assert by_name[name].threshold == pytest.approx(0.05 / 3)  # Bonferroni over the 3 p-value tests only
    hell = by_name["petal_width"]
    assert hell.test == "hellinger" and hell.p_value is None and hell.threshold is not None
    # the histogram counts are the drift service's bins counted independently
    edges = hell.bins.points
    assert hell.bins.reference_counts.tolist() == np.bincount(np.searchsorted(edges, ref[:, 3], side="right"),
                                                              minlength=len(edges) + 1).tolist()
    assert hell.current_counts.sum() == 50 and hell.bins.reference_counts.sum() == 100
    p = hell.bins.reference_counts / 100
    q = hell.current_counts / 50
    assert hell.score == pytest.approx(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)), abs=1e-12)


def test_report_is_self_contained(iris, tmp_path, capsys):
    html = run_report(iris, "shifted.csv", tmp_path / "r.html", capsys)
    parsed = parse(html)
    assert parsed.links == []  # no src or href at all, so nothing to fetch
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert not re.search(r"https?://|url\(|@import", html, flags=re.IGNORECASE)
    assert parsed.tags >= {"style", "svg", "rect", "table"}
    assert html.count("<svg") == len(FEATURES)
    # the summary comes first and names the drifted feature and the sizes
    summary = html[html.index('id="summary"'):html.index('id="drift"')]
    assert "1 / 4" in summary and "petal_length" in summary and "reference 100" in summary


def _chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = "chromium not found: install Debian's chromium package (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_headless_chromium_renders_the_report(iris, tmp_path, capsys):
    from PIL import Image

    html = tmp_path / "report.html"
    run_report(iris, "shifted.csv", html, capsys)
    png = tmp_path / "report.png"
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={png}", "--window-size=1200,1300", html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 1300)
    pixels = np.asarray(image).reshape(-1, 3)
    background = np.all(pixels == pixels[0], axis=1).mean()
    assert background < 0.9, "the screenshot is (nearly) blank"
    colours = {tuple(c) for c in pixels[::7]}
    assert (0x2F, 0x6F, 0xD0) in colours  # current-data bars were drawn
    assert (0xC6, 0x28, 0x28) in colours  # the drift verdict's red


def test_errors_are_one_line_and_exit_2(iris, tmp_path, capsys):
    monitor = str(iris / "monitor.yaml")
    cases = [
        (["--current", str(tmp_path / "nope.csv")], "nope.csv: current data not found"),
        (["--current", str(iris / "reference.csv"), "-m", str(tmp_path / "missing.yaml")], "monitor file not found"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    cases.append((["--current", str(bad)], "missing column(s) sepal_length"))
    for extra, message in cases:
        argv = ["report", "-m", monitor, "-o", str(tmp_path / "x.html"), "--workdir", str(iris / ".vigil"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], err
        assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "x.html").exists()


def test_report_does_not_import_tensorflow(iris, tmp_path):
    code = ("import sys; from vigil.cli import main; "
            f"rc = main(['report', '-m', {str(iris / 'monitor.yaml')!r}, '--current', {str(iris / 'shifted.csv')!r}, "
            f"'-o', {str(tmp_path / 'r.html')!r}, '--workdir', {str(tmp_path / 'w')!r}]); "
            "heavy = [m for m in ('tensorflow', 'alibi_detect', 'fastapi') if m in sys.modules]; "
            "assert rc == 0 and not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_capture_directory_gives_the_live_drift_services_verdicts(iris, tmp_path, capsys):
    """client -> logger (capture on) -> model server, the drift service as the logger's sink;
    then `vigil report --current <capture dir>` names what that service flagged."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from tests.conftest import serve_ready
    from tests.servers import serve_app, wait_until
    from vigil.capture.reader import iter_records
    from vigil.events import v2_request
    from vigil.logger.app import create_app as logger_app
    from vigil.logger.settings import LoggerSettings
    from vigil.modelserver.app import create_app as model_app
    from vigil.modelserver.settings import ModelServerSettings
    from vigil_detectors.drift.service import create_app as drift_app

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "model.joblib")
    shifted = pd.read_csv(iris / "shifted.csv")[FEATURES].to_numpy()
    plan, _ = local_plan(load_monitor(iris / "monitor.yaml"), iris, tmp_path / "work", 0)
    drift = plan.get("drift")
    assert drift is not None
    out = tmp_path / "capture"
    with serve_app(model_app(ModelServerSettings(uri=str(tmp_path / "model.joblib"), name="iris"))) as model, \
            serve_ready(drift_app(drift.settings)) as drift_client:
        settings = LoggerSettings(upstream=model, monitor="iris-report", namespace="default", model_name="iris",
                                  sinks=[{"name": "drift", "url": str(drift_client.base_url).rstrip("/"),
                                          "types": ["request"]}],
                                  capture={"uri": f"file://{out}", "rotate_seconds": 1.0})
        with serve_app(logger_app(settings)) as url, httpx.Client(timeout=10) as c:
            for i in range(0, 50, 10):
                r = c.post(url + "/v2/models/iris/infer", json=v2_request(shifted[i:i + 10]))
                assert r.status_code == 200, r.text
            wait_until(lambda: drift_client.get("/status").json()["drift"]["windows"] == 1, timeout=20,
                       what="the drift window checked")
            wait_until(lambda: out.exists() and len(list(iter_records(str(out), kinds=["request"]))) == 5, timeout=15,
                       what="5 captured requests")
        live = drift_client.get("/status").json()["drift"]["features"]
    html = run_report(iris, str(out), tmp_path / "capture.html", capsys)
    assert parse(html).verdicts == {name: "drift" if f["drifted"] else "ok" for name, f in live.items()}
    assert parse(html).verdicts["petal_length"] == "drift"
    assert "5 captured requests" in html


def test_rows_with_missing_values_are_skipped_as_the_drift_service_skips_them(iris, tmp_path):
    current = pd.read_csv(iris / "shifted.csv")
    current.loc[[0, 5, 9], "sepal_width"] = np.nan
    current.loc[3, "petal_length"] = np.nan
    path = tmp_path / "holes.csv"
    current.to_csv(path, index=False)  # NaN is written as an empty cell
    report = build_report(str(iris / "monitor.yaml"), str(path), tmp_path)
    assert report.current_rows == 50 and report.drift.skipped_rows == 4 and report.drift.checked_rows == 46
    complete = current.dropna()[FEATURES].to_numpy()
    ref = pd.read_csv(iris / "reference.csv")[FEATURES].to_numpy()
    by_name = {f.name: f for f in report.drift.features}
    assert by_name["petal_length"].current_counts.sum() == 46
    assert by_name["sepal_length"].score == pytest.approx(ks_2samp(ref[:, 0], complete[:, 0]).statistic, abs=1e-12)


def test_quality_section_is_the_live_quality_services_verdict(iris, tmp_path, capsys):
    """Missing, out-of-range and wrong-typed values in the current file: the report's quality rows
    and counts equal the live quality service's report for the same rows sent as named requests."""
    from tests.conftest import serve_ready
    from vigil_detectors.quality.service import create_app as quality_app

    frame = pd.read_csv(iris / "stationary.csv")[FEATURES].astype(object)
    frame.loc[[1, 4, 8, 15], "sepal_width"] = None  # 4 missing values: completeness
    frame.loc[20:31, "sepal_length"] = 100.0  # 12 far out of range (a few would be within what a clean window gives)
    frame.loc[[30, 31], "petal_length"] = "long"  # 2 wrong types
    path = tmp_path / "dirty.csv"
    frame.to_csv(path, index=False)
    html = run_report(iris, str(path), tmp_path / "dirty.html", capsys)
    rows = [{k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]

    plan, _ = local_plan(load_monitor(iris / "monitor.yaml"), iris, tmp_path / "work", 0)
    quality = plan.get("quality")
    assert quality is not None
    with serve_ready(quality_app(quality.settings)) as client:
        replies = []
        for i in range(0, 50, 10):
            msg = cloud_event({"instances": rows[i:i + 10]})
            replies.append(client.post("/", headers=dict(msg.headers), content=msg.body))
        assert [r.status_code for r in replies] == [202] * 4 + [200], [r.text for r in replies]
        live = replies[-1].json()["quality"]["report"]
    found = {(v["feature_name"], v["constraint_check_type"]): v["count"] for v in live["violations"]}
    assert found == {("sepal_width", "completeness"): 4, ("sepal_length", "range"): 12,
                     ("petal_length", "dataType"): 2}
    parsed = parse(html)
    assert parsed.quality == {"sepal_length": "violation", "sepal_width": "violation", "petal_length": "violation",
                              "petal_width": "ok", "_extra": "ok"}
    for (feature, check), n in found.items():
        assert f"{n} of 50 instances" in html, (feature, check)
    summary = html[html.index('id="summary"'):html.index('id="drift"')]
    assert ">3</div>" in summary  # three quality violations in the summary card
    # drift skips the 6 rows holding a missing or unusable value, as the drift service does
    assert "44 checked · 6 skipped" in summary


def test_a_monitor_without_drift_or_quality_blocks_gets_their_defaults(iris, tmp_path, capsys):
    bare = iris / "bare.yaml"
    bare.write_text(MONITOR.split("  detectors:")[0])
    out = tmp_path / "bare.html"
    assert main(["report", "-m", str(bare), "--current", str(iris / "shifted.csv"), "-o", str(out),
                 "--workdir", str(tmp_path / "w")]) == 0
    html = out.read_text()
    parsed = parse(html)
    assert parsed.verdicts["petal_length"] == "drift" and set(parsed.verdicts) == set(FEATURES)
    assert "defaults: the monitor has no drift block" in html
    assert "The monitor has no quality detector" in html
    assert set(parsed.quality) == {*FEATURES, "_extra"}  # profiled from the reference, checked



def test_a_baseline_that_cannot_be_read_leaves_the_drift_part_standing(iris, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.yaml"
    broken.write_text(MONITOR.replace("  reference: {storageUri: reference.csv}",
                                      f"  reference: {{storageUri: {iris / 'reference.csv'}}}\n"
                                      f"  baseline: {{storageUri: {tmp_path / 'empty'}}}"))
    out = tmp_path / "b.html"
    assert main(["report", "-m", str(broken), "--current", str(iris / "shifted.csv"), "-o", str(out),
                 "--workdir", str(tmp_path / "w")]) == 0
    err = capsys.readouterr().err
    assert "warning: data quality not computed" in err and "statistics.json" in err
    html = out.read_text()
    assert parse(html).verdicts["petal_length"] == "drift" and parse(html).quality == {}
    assert "not computed" in html[html.index('id="quality"'):]


def test_a_tensor_monitor_is_refused_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "ref.npy", np.zeros((4, 2, 2)))
    (tmp_path / "t.yaml").write_text(MONITOR.replace(
        "featureNames: [sepal_length, sepal_width, petal_length, petal_width]", "shape: [2, 2]")
        .replace("reference.csv", "ref.npy").split("  detectors:")[0])
    assert main(["report", "-m", str(tmp_path / "t.yaml"), "--current", str(tmp_path / "ref.npy"),
                 "-o", str(tmp_path / "t.html"), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "tabular features" in err[-1] and "[2, 2]" in err[-1]


def test_category_strings_unseen_values_and_missing_cells_agree_with_the_live_drift_service(tmp_path, capsys):
    """A string category (value list) whose mix shifts, with unseen values and missing cells: the
    report and the live drift service (same rows as named requests) flag the same features, the
    unseen values fill the category's own bin, and rows holding a missing value are skipped by both."""
    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    rng = np.random.default_rng(5)
    colours = np.array(["red", "green", "blue"])
    order = rng.permutation(len(frame))
    ref = frame.iloc[order[:100]][FEATURES].copy()
    ref["colour"] = colours[rng.choice(3, 100, p=[0.6, 0.3, 0.1])]
    cur = frame.iloc[order[100:]][FEATURES].copy().astype(object)
    cur["colour"] = colours[rng.choice(3, 50, p=[0.15, 0.3, 0.55])]
    cur.iloc[[2, 9, 17], 4] = "purple"  # unseen
    cur.iloc[[4, 30], 3] = None  # missing petal_width: skipped
    ref.to_csv(tmp_path / "reference.csv", index=False)
    cur.to_csv(tmp_path / "current.csv", index=False)
    (tmp_path / "monitor.yaml").write_text(MONITOR.replace(
        "featureNames: [sepal_length, sepal_width, petal_length, petal_width]",
        "featureNames: [sepal_length, sepal_width, petal_length, petal_width, colour]\n"
        "    categorical: {colour: [red, green, blue]}").replace("size: 50, maxAge", "size: 48, maxAge"))
    out = tmp_path / "r.html"
    assert main(["report", "-m", str(tmp_path / "monitor.yaml"), "--current", str(tmp_path / "current.csv"),
                 "-o", str(out), "--workdir", str(tmp_path / "w")]) == 0, capsys.readouterr().err
    html = out.read_text()
    report = build_report(str(tmp_path / "monitor.yaml"), str(tmp_path / "current.csv"), tmp_path / "w")
    colour = next(f for f in report.drift.features if f.name == "colour")
    assert colour.categorical and colour.test == "chi2" and colour.labels == ["red", "green", "blue"]
    assert colour.current_counts.tolist()[-1] == 3  # the unseen values' own bin
    assert report.drift.checked_rows == 48 and report.drift.skipped_rows == 2
    assert ">unseen<" in html and ">red<" in html
    # quality reads the same strings: the unseen values are a categories violation, the missing cells completeness
    assert parse(html).quality["colour"] == "violation" and parse(html).quality["petal_width"] == "violation"
    assert "3 of 50 instances (6.0%) hold a colour value outside its categories" in html

    rows = cur.to_dict("records")
    plan, _ = local_plan(load_monitor(tmp_path / "monitor.yaml"), tmp_path, tmp_path / "work", 0)
    drift = plan.get("drift")
    assert drift is not None
    from tests.conftest import serve_ready
    from vigil_detectors.drift.service import create_app as drift_app

    with serve_ready(drift_app(drift.settings)) as client:
        replies = []
        for i in range(0, 50, 10):
            msg = cloud_event({"instances": rows[i:i + 10]})
            replies.append(client.post("/", headers=dict(msg.headers), content=msg.body))
        assert all(r.status_code in (200, 202) for r in replies), [r.text for r in replies]
        live = client.get("/status").json()["drift"]
    assert live["windows"] == 1  # the 48 complete rows filled the window exactly
    assert parse(html).verdicts == {n: "drift" if f["drifted"] else "ok" for n, f in live["features"].items()}
    assert parse(html).verdicts["colour"] == "drift"
    assert live["features"]["colour"]["score"] == pytest.approx(colour.score, rel=1e-12)
