"""Static checks of the Grafana dashboards and alert rules against the code.

- Every metric a dashboard panel or an alert rule names is defined somewhere in the code
  (vigil/, detectors/, operator/): created through `ServiceMetrics.counter/gauge/histogram`
  or prometheus-client directly; `_bucket`/`_sum`/`_count` only for histograms.
- Every panel query is valid PromQL (promtool checks it, Grafana variables substituted),
  filters on the `namespace` and `monitor` template variables, and uses the `datasource`
  variable; the dashboards are well-formed (unique ids, grid positions, templating).

Whether each query returns data is tests/test_dashboards_live.py's job.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.prom import need

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "charts" / "vigil" / "dashboards").glob("*.json"))
RULES = ROOT / "alerts" / "vigil-rules.yaml"
CODE_DIRS = [ROOT / "vigil", ROOT / "detectors", ROOT / "operator"]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
#: Series Prometheus itself makes for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Grafana's variables, replaced by something PromQL accepts for the syntax check.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*",
                "$monitor": ".*", "$window": "recent"}

_STRING_IN_QUOTES = re.compile(r'"(?:[^"\\]|\\.)*"')


# -- what the code defines ----------------------------------------------------------------

class _Metrics(ast.NodeVisitor):
    """Metric names in one module: string literals `"vigil_..."`, and f-strings
    `f"vigil_metrics_{name}_total"` whose placeholder is filled with string literals that
    appear in the same module (e.g. the keys of a dict of metric names)."""

    def __init__(self):
        self.literals: set[str] = set()
        self.templates: list[tuple[str, bool]] = []  # (regex, is_histogram)
        self.histograms: set[str] = set()
        self.strings: set[str] = set()

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            self.strings.add(node.value)
            if re.fullmatch(r"vigil_[a-z0-9_]+", node.value):
                self.literals.add(node.value)

    def visit_JoinedStr(self, node):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(re.escape(v.value))
            else:
                parts.append(rf"(?P<p{len(parts)}>[a-z0-9_]+)")
        pattern = "".join(parts)
        if pattern.startswith("vigil_"):
            self.templates.append((pattern, False))
        # do not descend: the constant parts are not metric names by themselves

    def visit_Call(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("histogram", "Histogram") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.histograms.add(first.value)
            elif isinstance(first, ast.JoinedStr):
                self.generic_visit(node)
                self.templates[-1] = (self.templates[-1][0], True)
                return
        self.generic_visit(node)


def code_metrics() -> tuple[set[str], set[str]]:
    """(all metric names the code defines, the histogram ones)."""
    names: set[str] = set()
    histograms: set[str] = set()
    for base in CODE_DIRS:
        for path in base.rglob("*.py"):
            visitor = _Metrics()
            visitor.visit(ast.parse(path.read_text(), str(path)))
            names |= visitor.literals
            histograms |= visitor.histograms
            for pattern, is_hist in visitor.templates:
                groups = re.compile(pattern).groupindex
                for candidate in _expand(pattern, groups, visitor.strings):
                    names.add(candidate)
                    if is_hist:
                        histograms.add(candidate)
    return names, histograms


def _expand(pattern: str, groups, strings: set[str]) -> set[str]:
    """Fill each placeholder of an f-string pattern with the module's own string literals."""
    out = {pattern}
    for group in groups:
        token = rf"(?P<{group}>[a-z0-9_]+)"
        out = {p.replace(token, re.escape(s), 1) for p in out for s in strings
               if re.fullmatch(r"[a-z0-9_]+", s)}
    return {re.sub(r"\\(.)", r"\1", p) for p in out}


# -- what dashboards and rules use ------------------------------------------------------

def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every panel target."""
    out = []
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())):
            for t in panel.get("targets", []):
                out.append((path.name, panel["title"], t["expr"]))
    return out


def rule_queries() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in doc["groups"] for r in g["rules"]]


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def metrics_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, label lists and functions left out)."""
    text = _STRING_IN_QUOTES.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {m for m in names if m.startswith("vigil_") or m in PROMETHEUS_SERIES}


def _known(metric: str, names: set[str], histograms: set[str]) -> bool:
    if metric in names or metric in PROMETHEUS_SERIES:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in histograms:
            return True
    return False


# -- tests --------------------------------------------------------------------------------

def test_there_are_two_dashboards_and_rules():
    assert {p.name for p in DASHBOARDS} == {"vigil-overview.json", "vigil-monitor.json"}
    assert RULES.exists()


def test_metric_discovery_finds_what_the_code_defines():
    """The discovery itself: known literal, f-string and histogram cases from the code."""
    names, histograms = code_metrics()
    for expected in ("vigil_events_received_total", "vigil_logger_queue_depth", "vigil_detector_ready"):
        assert expected in names
    assert "vigil_logger_added_latency_seconds" in histograms
    assert not _known("vigil_logger_queue_depth_bucket", names, histograms)  # a gauge has no buckets
    assert not _known("vigil_no_such_metric_total", names, histograms)


def test_metric_extraction_from_promql():
    expr = ('sum by (namespace, monitor) (rate(vigil_outlier_outliers_total{namespace=~"$namespace", '
            'monitor="vigil_fake"}[5m])) / on (monitor) up{job="vigil"} and vigil_x_total > 0')
    assert metrics_in(expr) == {"vigil_outlier_outliers_total", "up", "vigil_x_total"}
    assert metrics_in("histogram_quantile(0.5, sum by (le) (rate(vigil_a_bucket[1m])))") == {"vigil_a_bucket"}


@pytest.mark.parametrize("source", ["dashboards", "rules"])
def test_every_metric_named_exists_in_the_code(source):
    names, histograms = code_metrics()
    if source == "dashboards":
        used = {(f"{d}: {title}", m) for d, title, expr in dashboard_queries() for m in metrics_in(expr)}
    else:
        used = {(alert, m) for alert, expr in rule_queries() for m in metrics_in(expr)}
    assert used, "no metric found in any query"
    missing = sorted((where, m) for where, m in used if not _known(m, names, histograms))
    assert not missing, f"metrics named in {source} but defined nowhere in vigil/, detectors/, operator/: {missing}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path):
    d = json.loads(path.read_text())
    assert d["uid"] == path.stem and d["title"].startswith("Vigil / ")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert {"datasource", "namespace", "monitor"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "monitor"):
        assert variables[name]["type"] == "query"
        assert "label_values(" in variables[name]["definition"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in _panels(d):
        assert p["title"] and p.get("description"), f"panel {p['id']} needs a title and a description"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            if all(m.startswith("vigil_operator_") for m in metrics_in(t["expr"])):
                continue  # the operator's own series are operator-wide: no monitor/namespace labels
            assert 'namespace=~"$namespace"' in t["expr"] and 'monitor=~"$monitor"' in t["expr"], \
                f"{p['title']!r}: query ignores the namespace/monitor variables: {t['expr']}"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def test_panels_do_not_overlap():
    for path in DASHBOARDS:
        cells: dict[tuple[int, int], str] = {}
        for p in json.loads(path.read_text())["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{path.name}: {p['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = p["title"]


def test_overview_covers_the_issue_list():
    """Overview: drift, outlier rate, accuracy, event rates, drops. Monitor: the drill-downs."""
    text = {p.name: p.read_text() for p in DASHBOARDS}
    for metric in ("vigil_operator_monitors", "vigil_drift_detected", "vigil_outlier_outliers_total", "vigil_metrics_accuracy",
                   "vigil_events_received_total", "vigil_logger_events_dropped_total", "vigil_logger_requests_total"):
        assert metric in text["vigil-overview.json"], metric
    for metric in ("vigil_drift_p_value", "vigil_outlier_score_bucket", "vigil_metrics_true_positives_total",
                   "vigil_metrics_false_negatives_total", "vigil_metrics_precision", "vigil_metrics_recall",
                   "vigil_logger_added_latency_seconds_bucket", "vigil_logger_queue_depth",
                   "vigil_explainer_precision", "vigil_explainer_coverage"):
        assert metric in text["vigil-monitor.json"], metric


def test_every_panel_query_is_valid_promql(tmp_path):
    """promtool parses each query (as a recording rule) with Grafana's variables filled in."""
    promtool = need("promtool")
    rules = []
    for i, (dash, title, expr) in enumerate(dashboard_queries()):
        for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{dash}: {title!r}: unknown variable in {expr}"
        rules.append({"record": f"vigil:panel_{i}", "expr": expr})
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout
