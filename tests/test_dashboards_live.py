"""Every dashboard panel's query, run against a real Prometheus that scraped a real run.

bench/livestack.py starts `vigil up` of an iris monitor with all four detectors, the
operator against the API emulator, and Debian's `prometheus` (scraping every second, with
Vigil's alert rules loaded); bench/traffic.py sends normal, drifted and outlier traffic with
feedback, a few rejected requests and two explanations. Then:

- every query of every panel returns at least one series with a finite value;
- the panels show what happened (drift detected, outlier share up, accuracy down, the
  drifted feature's p-value low, confusion counts adding up to the feedback sent);
- the alert rules see it too: drift, outlier rate and accuracy alerts become active;
- bench/render_dashboards.py draws every panel from this Prometheus.

Slow by nature (training the VAE and the explainer, about a minute on two busy cores): one
stack for the whole module.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import pytest

from tests.prom import need

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import livestack  # noqa: E402
import render_dashboards  # noqa: E402

DASHBOARDS = sorted((ROOT / "charts" / "vigil" / "dashboards").glob("*.json"))
pytestmark = [pytest.mark.prometheus, pytest.mark.tensorflow]


def _targets():
    out = []
    for path in DASHBOARDS:
        for panel in render_dashboards.panels(json.loads(path.read_text())):
            for t in panel["targets"]:
                out.append(pytest.param(path.stem, panel["title"], t["expr"],
                                        id=f"{path.stem}:{panel['title']}:{t['refId']}"))
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    need("prometheus")
    with livestack.LiveStack(tmp_path_factory.mktemp("live")) as stack:
        stack.traffic_started = time.time()
        sent = stack.traffic()
        assert not sent.errors, sent.errors
        stack.sent = sent
        stack.settle()
        yield stack


def run(live, expr: str) -> list:
    window = f"{int(time.time() - live.traffic_started) + 30}s"
    return live.query(render_dashboards.substitute(expr, livestack.NAMESPACE, livestack.MONITOR, window))


def values(result: list) -> list[float]:
    return [float(r["value"][1]) for r in result]


@pytest.mark.parametrize("dashboard, title, expr", _targets())
def test_panel_returns_data(live, dashboard, title, expr):
    result = run(live, expr)
    assert result, f"{dashboard}: {title!r} returned no series for {expr}"
    assert any(math.isfinite(v) for v in values(result)), f"{dashboard}: {title!r}: only NaN/Inf: {result}"


def test_every_panel_was_queried():
    """The parametrization covers each panel of both dashboards (none skipped)."""
    titles = {(p.values[0], p.values[1]) for p in _targets()}
    for path in DASHBOARDS:
        for panel in render_dashboards.panels(json.loads(path.read_text())):
            assert (path.stem, panel["title"]) in titles


def _panel(dashboard: str, title: str) -> dict:
    doc = json.loads((ROOT / "charts" / "vigil" / "dashboards" / f"{dashboard}.json").read_text())
    return next(p for p in render_dashboards.panels(doc) if p["title"] == title)


def _by(result: list, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_overview_shows_the_incident(live):
    drift = run(live, _panel("vigil-overview", "Drift")["targets"][0]["expr"])
    assert values(drift) == [1.0]
    outliers = values(run(live, _panel("vigil-overview", "Outlier rate (recent)")["targets"][0]["expr"]))
    assert outliers[0] > 0.1  # the last phase is outliers; normal traffic gives about 0.05
    accuracy = values(run(live, _panel("vigil-overview", "Accuracy (recent)")["targets"][0]["expr"]))
    assert accuracy[0] < 0.8
    up = _by(run(live, _panel("vigil-overview", "Components up")["targets"][0]["expr"]), "component")
    assert up == {c: 1.0 for c in livestack.COMPONENTS}
    ready = _by(run(live, _panel("vigil-overview", "Detectors ready")["targets"][0]["expr"]), "component")
    assert ready == {c: 1.0 for c in ("outlier", "drift", "metrics", "explainer", "quality")}
    phases = _by(run(live, _panel("vigil-overview", "Monitors by phase")["targets"][0]["expr"]), "phase")
    assert sum(phases.values()) == 1.0, phases  # the one monitor the operator serves
    # The panel has the series; its rate can read 0 here because the logger creates a
    # reason's counter at the first rejection (Prometheus' rate() cannot see that first step),
    # so check the counter behind it counted every rejected request.
    rejected = _by(run(live, _panel("vigil-overview", "Events rejected")["targets"][0]["expr"]), "reason")
    assert "missing_truth" in rejected
    total = values(run(live, 'sum(vigil_events_rejected_total{namespace="live", monitor="iris", '
                             'component="logger", reason="missing_truth"})'))
    assert total == [float(live.sent.rejected)] and live.sent.rejected > 0


def test_drill_down_shows_the_drifted_feature(live):
    pvalues = _by(run(live, _panel("vigil-monitor", "Per-feature p-value")["targets"][0]["expr"]), "feature")
    assert set(pvalues) == set(livestack.FEATURES)
    assert pvalues["petal_length"] < 0.05


def test_confusion_counts_add_up_to_the_feedback(live):
    panel = _panel("vigil-monitor", "Confusion counts per class")
    counts = {t["legendFormat"].split()[0]: _by(run(live, t["expr"]), "class") for t in panel["targets"]}
    classes = {"setosa", "versicolor", "virginica"}
    assert all(set(c) == classes for c in counts.values())
    rows = live.sent.rows
    for cls in classes:  # one-vs-rest: every scored row is TP, FP, FN or TN for each class
        assert sum(counts[k][cls] for k in ("TP", "FP", "FN", "TN")) == rows
    assert sum(counts["TP"].values()) + sum(counts["FP"].values()) == rows


def test_outlier_score_heatmap_has_the_threshold_bucket(live):
    buckets = _by(run(live, _panel("vigil-monitor", "Outlier score distribution")["targets"][0]["expr"]), "le")
    threshold = values(run(live, 'max(vigil_outlier_threshold{monitor="iris"})'))[0]
    edges = [float(le) for le in buckets if le != "+Inf"]
    assert any(math.isclose(e, threshold, rel_tol=1e-6) for e in edges)
    assert sum(buckets.values()) > 0


def test_alert_rules_see_the_incident(live):
    """Prometheus evaluates alerts/vigil-rules.yaml on the same data: the drift, outlier and
    accuracy alerts are active (pending or firing); the health alerts are not."""
    deadline = time.monotonic() + 20
    expected = {"VigilDriftDetected", "VigilOutlierRateHigh", "VigilAccuracyLow"}
    while True:
        active = {r["metric"]["alertname"] for r in live.query("ALERTS")}
        if expected <= active or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert expected <= active, active
    assert not active & {"VigilComponentDown", "VigilDetectorNotReady", "VigilEventsDropped"}, active


def test_render_every_panel(live, tmp_path):
    out = tmp_path / "dashboards.png"
    drawn = render_dashboards.render(live.prometheus_url, out, livestack.NAMESPACE, livestack.MONITOR,
                                     start=live.traffic_started - 60, end=time.time())
    total = sum(len(render_dashboards.panels(json.loads(p.read_text()))) for p in DASHBOARDS)
    assert drawn["panels"] == total and drawn["empty"] == [], drawn
    assert out.stat().st_size > 50_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("component", livestack.COMPONENTS)
def test_metrics_of_every_component_pass_promtool(live, component):
    """After real traffic (so every labelled series exists), each /metrics is valid exposition."""
    import subprocess

    import httpx

    text = httpx.get(live.urls[component] + "/metrics", timeout=10).text
    assert "vigil_" in text
    check = subprocess.run([need("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, f"{component}: {check.stdout}{check.stderr}"


def test_readme_curl_commands_work_as_pasted(live):
    """The README's 'Sending traffic and feedback' commands, run by bash against this stack."""
    import subprocess

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Sending traffic and feedback", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip().startswith("curl")]
    assert len(commands) >= 4, block
    ports = {"8080": "logger", "8085": "explainer"}
    iid = None
    for command in commands:
        command = re.sub(r"localhost:(\d+)", lambda m: live.urls[ports[m.group(1)]].removeprefix("http://"), command)
        if "<x-inference-id>" in command:
            assert iid, "the README sends feedback before any inference returned an id"
            command = command.replace("<x-inference-id>", iid)
        out = subprocess.run(["bash", "-c", command + " --fail-with-body"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        assert '"error"' not in out.stdout, f"{command}\n{out.stdout}"
        found = re.search(r"x-inference-id: (\S+)", out.stdout, re.I)
        iid = found.group(1) if found else iid
