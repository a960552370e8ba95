"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Layout: a summary first (verdict, features drifted of tested, quality violations, data
sizes, the check's settings, monitor and time), then one table row per feature carrying
``data-feature="<name>"`` and ``data-verdict="drift|ok"`` (for scripts), with its
histograms, statistic, score, threshold, p-value and verdict.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Optional

from vigil.report.build import Report
from vigil.report.drift import FeatureDrift
from vigil.report.quality import COLUMNS, QualityPart
from vigil.report.svg import CURRENT_COLOUR, REFERENCE_COLOUR, histogram

CSS = """
:root { --ink:#1d2430; --muted:#5b6675; --line:#dfe3ea; --bg:#f5f7fa; --drift:#c62828; --ok:#2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 40px; }
header h1 { margin: 0; font-size: 24px; font-weight: 650; }
header p { margin: 4px 0 0; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; margin: 22px 0 28px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 650; margin-top: 2px; }
.card .note { color: var(--muted); font-size: 12.5px; margin-top: 2px; }
.card.verdict.drift { border-left: 5px solid var(--drift); } .card.verdict.drift .value { color: var(--drift); }
.card.verdict.ok { border-left: 5px solid var(--ok); } .card.verdict.ok .value { color: var(--ok); }
h2 { font-size: 18px; margin: 0 0 10px; }
.legend { color: var(--muted); font-size: 12.5px; margin-bottom: 8px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; vertical-align: -1px; margin: 0 4px 0 12px; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
th { text-align: left; font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
     padding: 10px 12px; border-bottom: 1px solid var(--line); }
td { padding: 10px 12px; border-bottom: 1px solid var(--line); vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
tr.feature.drift td:first-child { box-shadow: inset 4px 0 0 var(--drift); }
td.name { font-weight: 600; font-size: 15px; }
td.name .kind { display: block; font-weight: 400; font-size: 12px; color: var(--muted); }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-weight: 650; font-size: 12.5px; }
.badge.drift { background: #fde7e7; color: var(--drift); } .badge.ok { background: #e6f4e7; color: var(--ok); }
svg.hist { display: block; }
svg.hist .grid { stroke: #eceff3; } svg.hist .axis { stroke: #9aa3ae; }
svg.hist text { font-size: 10px; fill: #5b6675; } svg.hist .ytick { text-anchor: end; } svg.hist .xtick { text-anchor: middle; }
section { margin-bottom: 28px; }
.empty { color: var(--muted); background: #fff; border: 1px dashed var(--line); border-radius: 8px; padding: 12px 16px; }
td.bad { color: var(--drift); font-weight: 650; background: #fdf1f1; } td.warn { color: #8a5a00; }
td.na { color: #b0b7c1; } .ratio { color: var(--muted); font-weight: 400; font-size: 12px; }
table.quality td, table.quality th { text-align: right; } table.quality td:first-child, table.quality th:first-child,
table.quality td:last-child, table.quality th:last-child { text-align: left; }
ul.violations { margin: 0 0 10px; padding-left: 20px; } ul.violations li { margin: 2px 0; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 24px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
"""


def _num(x: Optional[float]) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _threshold(f: FeatureDrift) -> str:
    if f.threshold is None:
        return "—"
    return f"p &lt; {_num(f.threshold)}" if f.p_value is not None else f"score ≥ {_num(f.threshold)}"


def _card(label: str, value: str, note: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{label}</div><div class="value">{value}</div>'
            f'<div class="note">{note}</div></div>')


def _quality_card(report: Report) -> str:
    q = report.quality
    if q is None:
        return _card("Quality violations", "—", escape(report.quality_note))
    cls = "verdict drift" if q.violations else "verdict ok"
    return _card("Quality violations", f"{len(q.violations)}", escape(", ".join(q.features_violated)) or "none", cls)


def _row(f: FeatureDrift) -> str:
    kind = "categorical" if f.categorical else "numeric"
    return (f'<tr class="feature {f.verdict}" data-feature="{escape(f.name, quote=True)}" data-verdict="{f.verdict}">'
            f'<td class="name">{escape(f.name)}<span class="kind">{kind}</span></td>'
            f"<td>{histogram(f.bins, f.current_counts, f.labels)}</td>"
            f'<td>{escape(f.test)}</td><td class="num">{_num(f.score)}</td><td class="num">{_threshold(f)}</td>'
            f'<td class="num">{_num(f.p_value)}</td>'
            f'<td><span class="badge {f.verdict}">{"drift" if f.drifted else "ok"}</span></td></tr>')


LABELS = {"completeness": "Missing", "dataType": "Wrong type", "range": "Out of range", "categories": "Unknown category",
          "missingColumns": "Absent column"}


def _quality_cell(entry: Optional[dict]) -> str:
    if entry is None:
        return '<td class="num na">—</td>'
    cls = "bad" if entry["violated"] else ("warn" if entry["count"] else "")
    text = f'{entry["count"]:,} <span class="ratio">({entry["ratio"]:.1%})</span>' if entry["count"] else "0"
    return f'<td class="num {cls}" title="allowed in this window: {entry["allowed"]:,}">{text}</td>'


def _quality(q: Optional[QualityPart], note: str) -> str:
    if q is None:
        return f'<section id="quality"><h2>Data quality</h2><div class="empty">{escape(note)}</div></section>'
    head = "".join(f"<th>{LABELS[c]}</th>" for c in COLUMNS)
    rows = []
    for feature, checks in q.cells.items():
        if feature == "_extra":
            continue
        verdict = "violation" if q.violated(feature) else "ok"
        rows.append(f'<tr data-quality-feature="{escape(feature, quote=True)}" data-quality="{verdict}">'
                    f'<td class="name">{escape(feature)}</td>' + "".join(_quality_cell(checks.get(c)) for c in COLUMNS)
                    + f'<td><span class="badge {"drift" if verdict == "violation" else "ok"}">{verdict}</span></td></tr>')
    extra = q.cells.get("_extra", {}).get("extraColumns")
    if extra is not None:
        verdict = "violation" if extra["violated"] else "ok"
        cls = "bad" if extra["violated"] else ""
        rows.append(f'<tr data-quality-feature="_extra" data-quality="{verdict}"><td class="name">Unknown keys</td>'
                    f'<td colspan="{len(COLUMNS)}" class="{cls}" style="text-align:left">{extra["count"]:,} of '
                    f'{q.instances:,} instances carried keys the schema does not name'
                    + (f" ({escape(', '.join(q.extra_names))})" if q.extra_names else "")
                    + f'</td><td><span class="badge {"drift" if verdict == "violation" else "ok"}">{verdict}</span>'
                    '</td></tr>')
    items = "".join(f"<li><b>{escape(v['feature_name'])}</b> · {escape(v['constraint_check_type'])}: "
                    f"{escape(v['description'])}</li>" for v in q.violations)
    listing = f'<ul class="violations">{items}</ul>' if items else ""
    source = f"baseline <code>{escape(q.baseline)}</code>" if q.baseline else "baseline profiled from the reference"
    noted = f" {escape(note)}." if note else ""
    return (f'<section id="quality"><h2>Data quality</h2><div class="legend">Instances violating each check, '
            f'of {q.instances:,} ({source}). Red: a violation, more than a clean window gives; amber: a few, '
            f'within what a clean window gives; —: the check does not apply.{noted}</div>{listing}'
            f'<table class="quality"><thead><tr><th>Feature</th>{head}<th>Verdict</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def render(report: Report) -> str:
    """The whole page (see the module docstring)."""
    d = report.drift
    n_drifted, n_tested = len(d.drifted), len(d.features)
    verdict = "drift" if d.detected else "ok"
    settings = f"{escape(d.statistic)} · {escape(d.correction)} · α = {d.significance:g}"
    if not report.drift_configured:
        settings += " (defaults: the monitor has no drift block)"
    p_note = f"adjusted p-value {_num(d.p_value)}" if d.p_value is not None else "distances only"
    skipped = f" · {d.skipped_rows} skipped (missing values)" if d.skipped_rows else ""
    source = f", from {report.current_events:,} captured requests" if report.current_kind == "capture" else ""
    cards = "".join([
        _card("Drift", "Detected" if d.detected else "None", p_note, f"verdict {verdict}"),
        _card("Features drifted", f"{n_drifted} / {n_tested}", escape(", ".join(d.drifted)) or "none"),
        _quality_card(report),
        _card("Rows", f"{report.current_rows:,}", f"current{source} ({d.checked_rows:,} checked{skipped}) · "
                                                   f"reference {report.reference_rows:,}"),
    ])
    rows = "".join(_row(f) for f in d.features)
    title = f"Vigil report · {report.monitor}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body><main>
<header><h1>{escape(title)}</h1>
<p>drift and data quality of <b>{escape(Path(report.current_path).name)}</b> against the reference of monitor
<b>{escape(report.monitor)}</b> (namespace {escape(report.namespace)}) · generated {escape(report.created)}</p>
<p>drift check: {settings}</p></header>
<section class="cards" id="summary">{cards}</section>
<section id="drift"><h2>Drift per feature</h2>
<div class="legend">Share of rows per drift bin (numeric: the reference's deciles):<span class="swatch"
 style="background:{REFERENCE_COLOUR}"></span>reference<span class="swatch"
 style="background:{CURRENT_COLOUR}"></span>current</div>
<table><thead><tr><th>Feature</th><th>Distribution</th><th>Statistic</th><th>Score</th><th>Threshold</th>
<th>p-value</th><th>Verdict</th></tr></thead><tbody>{rows}</tbody></table></section>
{_quality(report.quality, report.quality_note)}
<footer>Current data <code>{escape(report.current_path)}</code> · monitor file <code>{escape(report.monitor_path)}</code>.
Verdicts come from the drift and quality services' own checks, set up from the monitor as they set them up, on
all current rows as one window; hover a bar for its bin and share.</footer>
</main></body></html>
"""
