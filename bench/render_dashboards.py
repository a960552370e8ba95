"""Draw a preview of Vigil's Grafana dashboards from a Prometheus, to one PNG (matplotlib).

Each panel of charts/vigil/dashboards/*.json is laid out on Grafana's 24-column grid and
drawn from its own queries: time series and state timelines from range queries, stats,
gauges and bar gauges from instant queries, the outlier score heatmap from its bucket
increases; titles with their `$variables` filled in, dark colours as in Grafana's dark
theme. It is our own drawing of the panels' data, not a Grafana screenshot: layout, fonts
and legends only approximate Grafana's (the README's caption says so).

    # any Prometheus that scrapes Vigil (a cluster's: kubectl port-forward ... 9090)
    python bench/render_dashboards.py --prometheus http://127.0.0.1:9090 \\
        --namespace default --monitor iris --since 30m --out dashboards.png

    # or start everything locally first (bench/livestack.py: vigil up + operator +
    # Prometheus), send paced traffic with drift, outliers and feedback, then draw
    python bench/render_dashboards.py --up --out docs/vigil-dashboards.png

It prints how many panels it drew and which came back empty.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import httpx

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = [ROOT / "charts" / "vigil" / "dashboards" / n for n in ("vigil-overview.json", "vigil-monitor.json")]
ROW_HEIGHT_IN = 0.34  # inches per Grafana grid row
WIDTH_IN = 22.0
COLORS = {"green": "#56a64b", "red": "#e02f44", "orange": "#ff9830", "blue": "#3274d9", "purple": "#a352cc",
          "text": "#b0b0b0", "yellow": "#f2cc0c"}
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642",
           "#cca300", "#447ebc", "#c15c17"]
BG, PANEL_BG, FG, GRID = "#111217", "#181b1f", "#d8d9da", "#2c3235"


def panels(dashboard: dict) -> list[dict]:
    """The dashboard's panels, rows left out (nested panels of collapsed rows included)."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def substitute(expr: str, namespace: str, monitor: str, window: str, metrics_window: str = "recent") -> str:
    """Grafana's variables replaced by concrete values (one namespace and monitor)."""
    for var, value in (("$__rate_interval", window), ("$__interval", window), ("$__range", window),
                       ("$namespace", re.escape(namespace)), ("$monitor", re.escape(monitor)),
                       ("$window", metrics_window)):
        expr = expr.replace(var, value)
    return expr


def title_text(title: str, namespace: str, monitor: str, metrics_window: str = "recent") -> str:
    """A dashboard or panel title as Grafana shows it: `$var` / `${var}` replaced by the value."""
    values = {"namespace": namespace, "monitor": monitor, "window": metrics_window}
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), title)


#: Outlier score heatmap: Grafana's dark-theme "Oranges" (empty cells are the panel colour).
HEATMAP_COLORS = ["#3d1f0c", "#8a3b12", "#e0611b", "#ff9830", "#ffd9a8"]
LEGEND_MAX = 10  # entries per panel legend; the rest are summarised as "+ n more"


def draw_legend(ax, series: list) -> None:
    """A legend that stays readable: series with data first, at most LEGEND_MAX entries."""
    import numpy as np

    lines = ax.get_lines()
    live = [i for i, s in enumerate(series) if np.nan_to_num(s[2]).any()]
    order = live + [i for i in range(len(series)) if i not in live]
    shown = order[:LEGEND_MAX]
    labels = [series[i][0] for i in shown]
    handles = [lines[i] for i in shown]
    if len(order) > LEGEND_MAX:
        hidden = order[LEGEND_MAX:]
        zero = sum(1 for i in hidden if i not in live)
        more = f"+ {len(hidden)} more" + (f" ({zero} all zero)" if zero else "")
        handles.append(ax.plot([], [], alpha=0)[0])
        labels.append(more)
    ax.legend(handles, labels, fontsize=8, loc="upper left", facecolor=PANEL_BG, edgecolor=GRID, labelcolor=FG,
              framealpha=0.85, ncol=1 + (len(labels) - 1) // 5, handlelength=1.2, columnspacing=1.0)


def legend(fmt: str, metric: dict) -> str:
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in metric.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


class Prom:
    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=30)

    def instant(self, q: str, at: float) -> list:
        r = self.http.get("/api/v1/query", params={"query": q, "time": at})
        r.raise_for_status()
        return r.json()["data"]["result"]

    def range(self, q: str, start: float, end: float, step: float) -> list:
        r = self.http.get("/api/v1/query_range", params={"query": q, "start": start, "end": end, "step": step})
        r.raise_for_status()
        return r.json()["data"]["result"]


def _mapped(value: float, defaults: dict) -> tuple[str, Optional[str]]:
    """Grafana value mapping and threshold colour for a stat value."""
    for mapping in defaults.get("mappings", []):
        options = mapping.get("options", {})
        key = str(int(value)) if math.isfinite(value) and value == int(value) else str(value)
        if key in options:
            return options[key].get("text", key), COLORS.get(options[key].get("color"), options[key].get("color"))
    color = None
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            color = COLORS.get(step["color"], step["color"])
    unit = defaults.get("unit")
    if not math.isfinite(value):
        return "NaN", color
    if unit == "percentunit":
        return f"{100 * value:.1f}%", color
    if defaults.get("decimals") is not None:
        return f"{value:.{defaults['decimals']}f}", color
    return (f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"), color


def render(prometheus: str, out: Path, namespace: str, monitor: str, start: float, end: float,
           rate_window: Optional[str] = None) -> dict:
    """Draw both dashboards to `out`; return {"panels": n, "empty": [titles without data]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    prom = Prom(prometheus)
    span = max(end - start, 60.0)
    step = max(1.0, span / 240)
    window = rate_window or f"{max(15, int(4 * step))}s"
    instant_window = f"{int(span)}s"  # stats and bar gauges summarise the whole range
    docs = [json.loads(p.read_text()) for p in DASHBOARDS]
    heights = [max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in d["panels"]) for d in docs]
    title_rows = 2
    total_rows = sum(heights) + title_rows * len(docs)
    fig = plt.figure(figsize=(WIDTH_IN, total_rows * ROW_HEIGHT_IN), facecolor=BG)
    unit_h = 1.0 / total_rows
    drawn, empty = 0, []
    offset = 0
    for doc, height in zip(docs, heights, strict=False):
        fig.text(0.005, 1 - (offset + 1.2) * unit_h, f"{title_text(doc['title'], namespace, monitor)}    "
                 f"namespace={namespace}  monitor={monitor}  "
                 f"{datetime.fromtimestamp(start):%H:%M:%S}–{datetime.fromtimestamp(end):%H:%M:%S}",
                 color=FG, fontsize=15, weight="bold", va="center")
        offset += title_rows
        for row in (p for p in doc["panels"] if p.get("type") == "row"):
            g = row["gridPos"]
            fig.text(0.005, 1 - (offset + g["y"] + 0.5) * unit_h, title_text(row["title"], namespace, monitor),
                     color=FG, fontsize=12,
                     weight="bold", va="center")
        for p in panels(doc):
            g = p["gridPos"]
            margin = 0.03  # room for tick labels left of the plot
            rect = [g["x"] / 24 + margin, 1 - (offset + g["y"] + g["h"]) * unit_h + 0.004,
                    g["w"] / 24 - margin - 0.004, g["h"] * unit_h - 0.012]
            ax = fig.add_axes(rect, facecolor=PANEL_BG)
            ax.set_title(title_text(p["title"], namespace, monitor), color=FG, fontsize=10, loc="left")
            for side in ax.spines.values():
                side.set_color(GRID)
            ax.tick_params(colors=FG, labelsize=7)
            defaults = p.get("fieldConfig", {}).get("defaults", {})
            has_data = False
            kind = p["type"]
            if kind in ("timeseries", "state-timeline", "heatmap"):
                series = []
                for t in p["targets"]:
                    q = substitute(t["expr"], namespace, monitor, window)
                    for r in prom.range(q, start, end, step):
                        xs = [datetime.fromtimestamp(float(v[0])) for v in r["values"]]
                        ys = np.array([float(v[1]) for v in r["values"]])
                        series.append((legend(t.get("legendFormat", ""), r["metric"]), xs, ys, r["metric"]))
                has_data = any(np.isfinite(s[2]).any() for s in series)
                if kind == "timeseries":
                    for i, (name, xs, ys, _) in enumerate(series):
                        ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], lw=1.3, label=name)
                    for th in defaults.get("thresholds", {}).get("steps", [])[1:]:
                        ax.axhline(th["value"], color=COLORS.get(th["color"], "red"), ls="--", lw=0.8)
                    if defaults.get("custom", {}).get("scaleDistribution", {}).get("type") == "log":
                        ax.set_yscale("log")
                    if defaults.get("unit") == "percentunit":
                        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
                    if series:
                        draw_legend(ax, series)
                elif kind == "state-timeline":
                    for i, (_name, xs, ys, _) in enumerate(series):
                        for x0, x1, v in zip(xs, xs[1:] + [xs[-1]], ys, strict=False):
                            if math.isfinite(v):
                                ax.barh(i, mdates.date2num(x1) - mdates.date2num(x0), left=mdates.date2num(x0),
                                        color=_mapped(v, defaults)[1] or PALETTE[0], height=0.8)
                    ax.set_yticks(range(len(series)), [s[0] for s in series])
                    ax.xaxis_date()
                else:  # heatmap: cumulative `le` buckets -> counts per bucket and time
                    buckets = sorted(series, key=lambda s: float(s[3].get("le", "inf")))
                    if buckets:
                        grid = np.nan_to_num(np.array([b[2] for b in buckets]))
                        counts = np.diff(np.vstack([np.zeros(grid.shape[1]), grid]), axis=0).clip(min=0)
                        cmap = matplotlib.colors.LinearSegmentedColormap.from_list(
                            "vigil-heat", HEATMAP_COLORS).with_extremes(bad=PANEL_BG)
                        ax.imshow(np.ma.masked_less_equal(counts, 0), aspect="auto", origin="lower", cmap=cmap,
                                  interpolation="nearest",
                                  extent=[mdates.date2num(buckets[0][1][0]), mdates.date2num(buckets[0][1][-1]),
                                          0, len(buckets)])
                        ax.set_yticks(np.arange(len(buckets)) + 0.5, [b[3].get("le") for b in buckets], fontsize=7)
                        ax.xaxis_date()
                ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
                ax.grid(color=GRID, lw=0.5)
            else:  # stat, gauge, bargauge: instant values at the end of the range
                items = []
                for t in p["targets"]:
                    q = substitute(t["expr"], namespace, monitor, instant_window)
                    for r in prom.instant(q, end):
                        items.append((legend(t.get("legendFormat", ""), r["metric"]), float(r["value"][1])))
                has_data = any(math.isfinite(v) for _, v in items)
                ax.set_xticks([])
                ax.set_yticks([])
                if kind == "bargauge" and items:
                    names = [n for n, _ in items]
                    vals = [v if math.isfinite(v) else 0 for _, v in items]
                    top = max(vals) or 1.0
                    ax.barh(range(len(items)), vals, color=[PALETTE[i % len(PALETTE)] for i in range(len(items))],
                            height=0.6)
                    ax.set_xlim(-0.3 * top, 1.15 * top)
                    ax.set_ylim(len(items) - 0.5, -0.5)
                    for i, (name, v) in enumerate(zip(names, vals, strict=False)):
                        ax.text(-0.02 * top, i, name, color=FG, va="center", ha="right", fontsize=7)
                        ax.text(v, i, f" {v:.0f}", color=FG, va="center", fontsize=7)
                else:
                    n = max(len(items), 1)
                    cols = min(n, 3 if kind != "gauge" else 1)
                    rows = math.ceil(n / cols)
                    for i, (name, v) in enumerate(items):
                        text, color = _mapped(v, defaults)
                        cx, cy = (i % cols + 0.5) / cols, 1 - (i // cols + 0.5) / rows
                        ax.text(cx, cy + 0.12 / rows, text, color=color or FG, ha="center", va="center",
                                fontsize=max(9, 22 - 3 * rows), weight="bold", transform=ax.transAxes)
                        ax.text(cx, cy - 0.22 / rows, name, color=FG, ha="center", va="center", fontsize=7,
                                transform=ax.transAxes)
            if not has_data:
                empty.append(f"{doc['title']}: {p['title']}")
                ax.text(0.5, 0.5, "No data", color="#888", ha="center", va="center", transform=ax.transAxes)
            drawn += 1
        offset += height
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=BG)
    plt.close(fig)
    return {"panels": drawn, "empty": empty}


def _since(text: str) -> float:
    m = re.fullmatch(r"(\d+)([smh])", text)
    if not m:
        raise argparse.ArgumentTypeError("use e.g. 90s, 30m, 2h")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prometheus", help="Prometheus base URL (not with --up)")
    p.add_argument("--namespace", default="default")
    p.add_argument("--monitor", default="iris")
    p.add_argument("--since", type=_since, default=_since("30m"), help="time range to draw, up to now")
    p.add_argument("--out", type=Path, default=Path("vigil-dashboards.png"))
    p.add_argument("--up", action="store_true", help="start vigil up + operator + Prometheus and send traffic first")
    p.add_argument("--workdir", type=Path, help="with --up: where the stack writes (default: a temp dir)")
    args = p.parse_args(argv)
    if args.up:
        import tempfile

        sys.path.insert(0, str(ROOT / "bench"))
        import livestack
        import traffic

        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-render-"))
        t0 = time.time()
        with livestack.LiveStack(workdir, window=200, say=print) as stack:
            print(f"stack up in {time.time() - t0:.0f} s; sending paced traffic")
            start = time.time() - 30
            for phase in traffic.PHASES:  # two drift windows per phase, 5 requests/s
                traffic.send(stack.urls["logger"], phases=(phase,), rows=400, batch=10, bad=2, rate=5.0,
                             explain_url=stack.urls["explainer"], explanations=1, seed=len(phase))
            stack.settle()
            time.sleep(5)
            t1 = time.time()
            result = render(stack.prometheus_url, args.out, livestack.NAMESPACE, livestack.MONITOR, start, time.time())
            took = time.time() - t1
    else:
        if not args.prometheus:
            p.error("--prometheus URL or --up")
        end = time.time()
        t1 = time.time()
        result = render(args.prometheus, args.out, args.namespace, args.monitor, end - args.since, end)
        took = time.time() - t1
    print(f"drew {result['panels']} panels to {args.out} in {took:.1f} s; "
          f"empty: {', '.join(result['empty']) or 'none'}")
    return 1 if result["empty"] else 0


if __name__ == "__main__":
    sys.exit(main())
