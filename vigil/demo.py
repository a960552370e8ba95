"""`vigil demo`: the whole product on one machine in a few minutes.

Trains a classifier on scikit-learn's iris data, writes a `ModelMonitor` with every
detector, runs it with the local backend exactly as `vigil up` would, then plays three
phases of traffic through the request logger — normal, drifted (petal length shifted,
so the model goes wrong and accuracy falls) and outliers — sending ground-truth feedback
for every inference. It prints what each detector saw after each phase (the quality
detector finds the drifted petal lengths beyond the baseline's range, and says where its
report, history and baseline are), one anchor explanation and, with `--keep-running`, where to look (`/metrics` URLs, a Prometheus
command line); without it the stack stops and the demo says so instead of printing dead URLs.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from vigil.events import v2_request

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]
WINDOW = 300  # drift, quality and metrics window, in instances
# One full drift window per phase: the window then holds exactly that phase's rows whatever
# order the logger's concurrent senders deliver them in, so each verdict is reproducible.
PHASE_ROWS = WINDOW
ROWS_PER_REQUEST = 10
DRIFT_SHIFT = {"petal_length": 2.0}  # cm added in the drifted phase (about 1.1 std)


class Traffic:
    """Production-like iris traffic: rows resampled from the data set with small noise."""

    def __init__(self, x: np.ndarray, y: np.ndarray, noise: float = 0.1):
        self.x, self.y = x, y
        self.scale = noise * x.std(axis=0)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(self.x), n)
        return np.round(self.x[idx] + rng.normal(0, self.scale, (n, self.x.shape[1])), 3), self.y[idx]


def monitor_yaml(name: str) -> str:
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata:
  name: {name}
spec:
  model:
    storageUri: model.joblib
    format: sklearn
    name: iris
  schema:
    featureNames: [{", ".join(FEATURES)}]
  reference:
    storageUri: reference.csv
  logger:
    mode: all
  detectors:
    outlier: {{type: vae, thresholdPercentile: 99, epochs: 25, maxBatchSize: 64, maxBatchDelayMs: 5}}
    drift: {{type: ks, pValue: 0.05, correction: bonferroni, window: {{size: {WINDOW}, mode: tumbling, maxAge: 10m}}}}
    metrics: {{task: classification, classes: [{", ".join(CLASSES)}], window: {WINDOW}}}
    explainer: {{type: anchor-tabular, threshold: 0.95}}
    quality: {{window: {{size: {WINDOW}, maxAge: 10m}}}}
"""


def prepare(workdir: Path, say: Callable[[str], None]) -> tuple[Path, Traffic]:
    """Model, reference data and monitor file in `workdir`."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    workdir.mkdir(parents=True, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    joblib.dump(model, workdir / "model.joblib")
    say(f"• model: logistic regression on iris, test accuracy {model.score(x_test, y_test):.3f} → model.joblib")
    traffic = Traffic(x, y)
    reference, _ = traffic.sample(1000, seed=0)
    header = ",".join(FEATURES)
    np.savetxt(workdir / "reference.csv", reference, delimiter=",", header=header, comments="", fmt="%.3f")
    say("• reference: 1000 rows of normal traffic → reference.csv")
    path = workdir / "monitor.yaml"
    path.write_text(monitor_yaml("iris-demo"))
    say(f"• monitor: {path}")
    return path, traffic


def progress(label: str, done: int, total: int, step: int = ROWS_PER_REQUEST) -> None:
    """A progress bar on a terminal; a line per quarter when output goes to a file or pipe (`step`: rows per
    update)."""
    width = 30
    filled = int(width * done / total)
    line = f"  {label:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line + ("\n" if done == total else ""))
    elif done == total or (done * 4 // total) != ((done - step) * 4 // total):
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def local_stack(monitor_path: Path, workdir: Path, base_port: int, say: Callable[[str], None]):
    """The monitor at `monitor_path` as `vigil up` runs it: (monitor, plan, placement, LocalStack), not started."""
    from vigil.local import LocalStack, local_plan
    from vigil.spec import load_monitor

    monitor = load_monitor(monitor_path)
    plan, placement = local_plan(monitor, workdir, workdir / ".vigil" / monitor.name, base_port)
    return monitor, plan, placement, LocalStack(plan, placement, say=say)


class DemoClient:
    """Traffic through the request logger (V2 requests, each followed by its ground-truth feedback) and the
    components' ``/status``."""

    def __init__(self, urls: dict[str, str], model_name: str, per_request: int = ROWS_PER_REQUEST,
                 timeout: float = 30.0):
        import httpx

        self.urls = urls
        self.per_request = per_request
        self.http = httpx.Client(timeout=timeout)
        self.infer = f"{urls['logger']}/v2/models/{model_name}/infer"

    def send(self, label: str, rows: np.ndarray, truth: np.ndarray) -> np.ndarray:
        predictions = []
        for start in range(0, len(rows), self.per_request):
            batch = rows[start:start + self.per_request]
            r = self.http.post(self.infer, json=v2_request(batch))
            r.raise_for_status()
            predictions.extend(r.json()["outputs"][0]["data"])
            fb = self.http.post(f"{self.urls['logger']}/feedback",
                                json={"truth": truth[start:start + self.per_request].tolist()},
                                headers={"x-inference-id": r.headers["x-inference-id"]})
            fb.raise_for_status()
            progress(label, min(start + self.per_request, len(rows)), len(rows), self.per_request)
        return np.asarray(predictions)

    def status(self, component: str) -> dict:
        return self.http.get(f"{self.urls[component]}/status").json()

    def settle(self, drift_windows: Optional[int], timeout: float = 60.0) -> None:
        """Wait until the logger has delivered every event and drift and quality have checked their windows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            depth = self.status("logger")["logger"]["queueDepth"]
            windows = min(self.status(c).get(c, {}).get("windows", 0) for c in ("drift", "quality"))
            if depth == 0 and (drift_windows is None or windows >= drift_windows):
                time.sleep(0.5)  # let the last deliveries be processed
                return
            time.sleep(0.2)
        raise TimeoutError("events were not delivered to the detectors in time; see the logs in the work dir")


def _fmt_p(p) -> str:
    if p is None:
        return "-"
    return "<1e-16" if p < 1e-16 else f"{p:.3g}"


def report_phase(name: str, client: DemoClient, before: dict, say) -> dict:
    drift = client.status("drift")["drift"]
    outlier = client.status("outlier")["outliers"]
    metrics = client.status("metrics")["metrics"]
    seen = outlier["seen"] - before.get("seen", 0)
    flagged = outlier.get("outliers", 0) - before.get("outliers", 0)
    checked = drift["windows"] - before.get("windows", 0)
    if checked:
        per_feature = ", ".join(f"{f}={_fmt_p(v.get('pValue'))}" for f, v in drift.get("features", {}).items())
        verdict = "DETECTED in " + ", ".join(drift["featuresDrifted"]) if drift["detected"] else "none"
        say(f"  drift     : {verdict}  (window #{drift['windows']}, p-values: {per_feature}; "
            f"drift when one is below {drift.get('threshold') or 0:.3g})")
    else:
        say(f"  drift     : no window completed in this phase ({drift.get('fill', 0)}/{WINDOW} instances waiting)")
    say(f"  outliers  : {flagged} of {seen} instances flagged ({flagged / max(seen, 1):.1%})")
    quality = client.status("quality")["quality"]
    reported = quality["windows"] - before.get("quality_windows", 0)
    if reported:
        found = quality["report"]["violations"]
        say("  quality   : " + ("; ".join(v["description"] for v in found) if found else
                                "no violation (window #{}, {} instances checked)".format(
                                    quality["windows"], quality["report"]["instances"])))
    else:
        say(f"  quality   : no window completed in this phase ({quality.get('fill', 0)}/{WINDOW} instances waiting)")
    acc = metrics.get("accuracy")
    say(f"  accuracy  : {acc:.3f} over the last {WINDOW} instances with feedback" if acc is not None else
        "  accuracy  : no feedback joined yet")
    return {"seen": outlier["seen"], "outliers": outlier.get("outliers", 0), "windows": drift["windows"],
            "drift": drift if checked else None, "accuracy": acc, "quality_windows": quality["windows"],
            "quality": quality if reported else None}


def prometheus_hint(workdir: Path, urls: dict[str, str], say) -> None:
    targets = ", ".join(f"'{u.removeprefix('http://')}'" for u in urls.values())
    cfg = workdir / "prometheus.yml"
    cfg.write_text(f"global: {{scrape_interval: 5s}}\nscrape_configs:\n  - job_name: vigil\n"
                   f"    static_configs: [{{targets: [{targets}]}}]\n")
    if shutil.which("prometheus"):
        say(f"  Prometheus: prometheus --config.file={cfg} --storage.tsdb.path={workdir / 'tsdb'} "
            "--web.listen-address=127.0.0.1:9090   (then query vigil_drift_detected)")
    else:
        say(f"  Prometheus config written to {cfg} (install Debian's `prometheus` package to scrape it)")


def report_hint(workdir: Path, monitor_path: Path, rows: np.ndarray, say: Callable[[str], None]) -> None:
    """The drifted phase's rows as drifted.csv and its HTML drift report (`vigil report`)."""
    from vigil.errors import VigilError
    from vigil.report import build_report, render

    current = workdir / "drifted.csv"
    np.savetxt(current, rows, delimiter=",", header=",".join(FEATURES), comments="", fmt="%.3f")
    try:
        report = build_report(str(monitor_path), str(current), workdir / ".vigil" / "report")
    except (VigilError, ValueError) as exc:
        say(f"\n Drift report: not written ({exc})")
        return
    out = workdir / "report.html"
    out.write_text(render(report), encoding="utf-8")
    say(f"\n Drift report of the drifted phase (open it in a browser): {out}")
    say(f"  vigil report -m {monitor_path} --current {current} -o {out}")


def run_demo(base_port: int, workdir: Path, keep_running: bool = False, say: Callable[[str], None] = print) -> int:
    from vigil.local import LocalError

    started = time.monotonic()
    say("Vigil demo — 1/4 preparing model, reference data and monitor")
    monitor_path, traffic = prepare(workdir, say)
    monitor, plan, placement, stack = local_stack(monitor_path, workdir, base_port, say)
    try:
        say("2/4 training detectors from reference data")
        stack.train()
        say("3/4 starting the stack on 127.0.0.1 (the model, logger and five detectors)")
        stack.start()
        client = DemoClient(stack.component_urls(), monitor.model_name)

        say("4/4 sending traffic through the request logger, with ground-truth feedback")
        results = {}
        before: dict = {}
        phases = [
            ("normal", traffic.sample(PHASE_ROWS, seed=1), 1),
            ("drifted", _shift(traffic.sample(PHASE_ROWS, seed=2)), 2),
            ("outliers", _outliers(30, seed=3), None),
        ]
        for name, (rows, truth), windows in phases:
            client.send(name, rows, truth)
            client.settle(windows)
            say(f"\n Phase '{name}' ({len(rows)} instances):")
            before = results[name] = report_phase(name, client, before, say)

        instance = traffic.sample(1, seed=4)[0]
        say("\n Explaining one prediction (anchors, model called as a black box over V2):")
        r = client.http.post(placement.url("explainer") + "/explain", json=v2_request(instance), timeout=120)
        if r.status_code == 200:
            e = r.json()
            pred = e.get("prediction")
            label = CLASSES[int(pred)] if isinstance(pred, (int, float)) else pred
            say(f"  {dict(zip(FEATURES, instance[0].tolist(), strict=False))}")
            say(f"  → {label} because {' AND '.join(e['anchor']) or '(empty anchor)'}"
                f"  (precision {e['precision']:.2f}, coverage {e['coverage']:.2f})")
        else:
            say(f"  explainer answered {r.status_code}: {r.text[:200]}")

        drifted_rows = next(rows for name, (rows, _), _ in phases if name == "drifted")
        report_hint(workdir, monitor_path, drifted_rows, say)

        normal, drifted = results["normal"]["drift"], results["drifted"]["drift"]
        ok = bool(normal and not normal["detected"] and drifted and drifted["detected"])
        q_normal, q_drifted = results["normal"]["quality"], results["drifted"]["quality"]
        quality_ok = bool(q_normal and not q_normal["violations"] and q_drifted and q_drifted["violations"])
        say("\nResult: " + ("drift caught in the drifted phase and not in the normal one"
                             if ok else "UNEXPECTED: drift verdicts differ from what was injected"))
        say("        " + ("quality: the drifted phase's out-of-range values reported, the normal phase clean"
                          if quality_ok else "UNEXPECTED: quality reports differ from what was injected"))
        ok = ok and quality_ok
        q = plan.get("quality")
        state = Path(q.settings.state_dir) if q is not None and q.settings.state_dir else None
        if state is not None:
            say(f"Quality: reports in {state / 'history.jsonl'} (one line per window); the baseline profiled "
                f"from reference.csv in {state / 'baseline'} (statistics.json, constraints.json: edit it and set "
                "spec.baseline.storageUri to use your copy).")
        say(f"Done in {time.monotonic() - started:.0f}s. Work dir: {workdir}")
        if keep_running:
            say("Where to look (the stack keeps running; Ctrl-C stops it):")
            for name, url in stack.component_urls().items():
                say(f"  {name:<10} {url}/metrics    {url}/status")
            prometheus_hint(workdir, stack.component_urls(), say)
            say(f"  vigil status --workdir {placement.workdir} --history 3   # drift and quality checks")
            say(f"  curl {placement.url('quality')}/history?limit=3   # quality reports (JSON)")
            stack.wait()
        else:
            say("The stack is stopping now. To look around: `vigil demo --keep-running` leaves it up "
                f"(endpoints, /metrics, Prometheus), or `vigil up {monitor_path}` runs it again "
                "with the detectors trained here.")
        return 0 if ok else 1
    except (LocalError, TimeoutError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()


def _shift(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows, truth = sample
    rows = rows.copy()
    for feature, delta in DRIFT_SHIFT.items():
        rows[:, FEATURES.index(feature)] += delta
    return rows, truth


def _outliers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = np.round(rng.uniform([10, 8, 12, 5], [15, 12, 20, 9], (n, 4)), 2)  # far outside any iris flower
    return rows, rng.integers(0, 3, n)
