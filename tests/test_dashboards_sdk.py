"""Both Grafana dashboards against Grafana's own published models (`grafana-foundation-sdk`,
the types Grafana generates from its schema, here for Grafana 11.6).

Each dashboard JSON is decoded with `Dashboard.from_json` (panels into `Panel`/`RowPanel`,
each panel's `options` and `fieldConfig.custom` into its plugin's generated classes, each
query into the Prometheus `Dataquery`) and encoded again with the SDK's encoder. A key the
models do not know is dropped on the way, and a value of the wrong shape does not survive:
so the check is that the round trip gives back exactly what we ship — apart from the two
export-only fields listed in `EXPORT_ONLY`, which Grafana writes but its model leaves out.
A deliberately misspelt copy must fail the same check.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

sdk = pytest.importorskip("grafana_foundation_sdk", reason="the dev extra's grafana-foundation-sdk")
from grafana_foundation_sdk.cog import runtime  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.cog.plugins import register_default_plugins  # noqa: E402
from grafana_foundation_sdk.models import prometheus  # noqa: E402
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "charts" / "vigil" / "dashboards").glob("*.json"))

#: Written by Grafana's export (and kept for import into Grafana's UI), not part of the
#: dashboard model: `__requires` (plugins the import needs) and a query variable's
#: `definition` (the editor's text form of its `query`).
EXPORT_ONLY = {".__requires", ".templating.list[].definition"}

register_default_plugins()


def lost_in_round_trip(doc: dict) -> list[str]:
    """Paths of what does not come back from decoding `doc` with Grafana's models and encoding it again."""
    again = json.loads(json.dumps(Dashboard.from_json(copy.deepcopy(doc)), cls=JSONEncoder))
    problems: list[str] = []

    def walk(a, b, path: str, generic: str) -> None:
        if isinstance(a, dict):
            if not isinstance(b, dict):
                problems.append(f"{path}: became {type(b).__name__}")
                return
            for key, value in a.items():
                sub, gen = f"{path}.{key}", f"{generic}.{key}"
                if key not in b:
                    if gen not in EXPORT_ONLY:
                        problems.append(f"{sub}: not in Grafana's model")
                else:
                    walk(value, b[key], sub, gen)
        elif isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                problems.append(f"{path}: list changed")
                return
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]", f"{generic}[]")
        elif a != b:
            problems.append(f"{path}: {a!r} came back as {b!r}")

    walk(doc, again, "", "")
    return problems


def all_panels(dashboard: Dashboard):
    for p in dashboard.panels or []:
        yield p
        if isinstance(p, RowPanel):
            yield from p.panels or []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_round_trips_through_grafanas_models(path):
    assert lost_in_round_trip(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_and_query_is_decoded_by_its_own_model(path):
    """Options, field config and queries are checked only when their plugin's model decodes them."""
    dashboard = Dashboard.from_json(json.loads(path.read_text()))
    panels = [p for p in all_panels(dashboard) if isinstance(p, Panel)]
    assert panels
    for p in panels:
        config = runtime.panelcfg_config(p.type_val)
        assert config is not None, f"{p.title}: panel type {p.type_val!r} is not one Grafana publishes"
        if config.options_from_json_hook and p.options is not None:
            assert not isinstance(p.options, dict), f"{p.title}: options not decoded by the {p.type_val} model"
        for target in p.targets or []:
            assert isinstance(target, prometheus.Dataquery), f"{p.title}: {type(target).__name__} query"


def test_a_misspelt_dashboard_fails_the_check():
    doc = json.loads(DASHBOARDS[0].read_text())
    bad = copy.deepcopy(doc)
    panel = next(p for p in bad["panels"] if p.get("type") == "stat")
    panel["gridpos"] = panel.pop("gridPos")
    panel["options"]["reduceOption"] = panel["options"].pop("reduceOptions")
    panel["targets"][0]["legendFromat"] = panel["targets"][0].pop("legendFormat", "")
    problems = lost_in_round_trip(bad)
    assert any(p.endswith(".gridpos: not in Grafana's model") for p in problems), problems
    assert any(p.endswith(".options.reduceOption: not in Grafana's model") for p in problems), problems
    assert any(p.endswith(".legendFromat: not in Grafana's model") for p in problems), problems
