"""Vigil's alert rules: promtool checks them and runs their unit tests (tests/rules/).

The rules have one source, the chart's `_rules.tpl`; alerts/vigil-rules.yaml is rendered
from it with the default values (alerts/render.py) and must be up to date. promtool comes
from Debian's `prometheus` package; without it these tests fail under CI=true and skip
locally.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.prom import need

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "vigil-rules.yaml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yaml"))
ALERTS = {"VigilDriftDetected", "VigilQualityViolations", "VigilOutlierRateHigh", "VigilAccuracyLow", "VigilEventsDropped",
          "VigilComponentDown", "VigilDetectorNotReady", "VigilOperatorReconcileErrors"}

sys.path.insert(0, str(ROOT / "alerts"))
import render  # noqa: E402  (alerts/render.py)

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def promtool() -> str:
    return need("promtool")


def _rules(text: str) -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}


def test_rule_file_is_rendered_from_the_chart():
    assert RULES.read_text() == render.render(), "alerts/vigil-rules.yaml is stale: run python alerts/render.py"


def test_every_alert_is_documented():
    rules = _rules(RULES.read_text())
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        for key in ("summary", "description", "hint"):
            assert len(rule["annotations"].get(key, "")) > 20, f"{name}: {key} missing or too short"


def test_promtool_check_rules(promtool):
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool):
    assert RULE_TESTS
    result = subprocess.run([promtool, "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True,
                            cwd=ROOT / "tests" / "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_has_a_firing_and_a_quiet_case():
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == ALERTS, f"alerts never tested firing: {ALERTS - firing}"
    assert quiet == ALERTS, f"alerts never tested quiet: {ALERTS - quiet}"


@pytest.mark.parametrize("setting, alert", [
    ("monitoring.prometheusRule.alerts.outlierRateHigh.threshold=0.3", "VigilOutlierRateHigh"),
    ("monitoring.prometheusRule.alerts.accuracyLow.threshold=0.5", "VigilAccuracyLow"),
    ("monitoring.prometheusRule.alerts.accuracyLow.minFeedback=1000", "VigilAccuracyLow"),
    ("monitoring.prometheusRule.alerts.componentDown.for=30m", "VigilComponentDown"),
    ("monitoring.prometheusRule.alerts.qualityViolations.for=10m", "VigilQualityViolations"),
    ("monitoring.prometheusRule.alerts.eventsDropped.threshold=100", "VigilEventsDropped"),
])
def test_unit_tests_notice_a_changed_threshold(promtool, tmp_path, setting, alert):
    """The rule tests have teeth: with a threshold from values changed, the same tests fail
    for that alert (and the chart really puts the value into the rule)."""
    (tmp_path / "alerts").mkdir()
    (tmp_path / "tests" / "rules").mkdir(parents=True)
    (tmp_path / "alerts" / "vigil-rules.yaml").write_text(render.render([setting]))
    for path in RULE_TESTS:
        (tmp_path / "tests" / "rules" / path.name).write_text(path.read_text())
    result = subprocess.run([promtool, "test", "rules", *[p.name for p in RULE_TESTS]], capture_output=True,
                            text=True, cwd=tmp_path / "tests" / "rules")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failed = [line.split("alertname:")[1].split(",")[0].strip() for line in output.splitlines()
              if "alertname:" in line]
    assert set(failed) == {alert}, output


def test_alerts_can_be_switched_off_and_labelled():
    text = render.render(["monitoring.prometheusRule.alerts.driftDetected.enabled=false",
                          "monitoring.prometheusRule.additionalLabels.team=ml-platform"])
    rules = _rules(text)
    assert set(rules) == ALERTS - {"VigilDriftDetected"}
    assert all(r["labels"]["team"] == "ml-platform" for r in rules.values())


def test_component_selector_comes_from_values():
    rules = _rules(render.render(["monitoring.prometheusRule.componentSelector=job=\"kubernetes-pods\""]))
    assert rules["VigilComponentDown"]["expr"] == 'up{job="kubernetes-pods"} == 0'
