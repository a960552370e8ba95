"""Benchmark: seconds per anchor explanation, and what each costs in model calls.

    python bench/bench_explainer.py [--explanations 30] [--trees 50]

What it does:
1. Trains an iris RandomForest and saves it with joblib in a temp dir.
2. Starts the real model server (``vigil serve model``) as a subprocess on 127.0.0.1.
3. Fits and saves the explainer with `train_explainer` (alibi's `save_explainer`).
4. Starts the real explainer service (``vigil serve explainer``) as a subprocess, loading that
   artifact and calling the model server over V2 on loopback.
5. Asks ``POST /explain`` for N different iris instances (spread over the three classes),
   one at a time, then the same N with two callers at once (the service runs two explainer
   copies by default).
6. For comparison, explains the same instances in this process with the model called
   directly (no HTTP): the difference is what the black-box V2 calls cost.

Prints the median / p90 seconds per explanation (client wall clock and the service's own
``durationSeconds``), model calls and rows per explanation, the share of anchors meeting the
precision threshold, and explanations/s with two callers. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the shared loopback helpers: tests.servers

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def row(label, values, fmt="{:.3f}"):
    return f"  {label:<48} median {fmt.format(statistics.median(values))}   p90 {fmt.format(pct(values, 0.9))}" \
           f"   min {fmt.format(min(values))}   max {fmt.format(max(values))}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--explanations", type=int, default=30, help="different instances explained (N)")
    ap.add_argument("--trees", type=int, default=50, help="trees in the iris RandomForest")
    ap.add_argument("--threshold", type=float, default=0.95)
    args = ap.parse_args()

    import httpx
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from tests.servers import serve_component
    from vigil.events import v2_request

    x, y = load_iris(return_X_y=True)
    idx = np.linspace(0, len(x) - 1, args.explanations).round().astype(int)
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-explainer-"))
    model_path = work / "model.joblib"
    model = RandomForestClassifier(n_estimators=args.trees, random_state=0).fit(x, y)
    joblib.dump(model, model_path)
    print(f"iris RandomForest ({args.trees} trees), {args.explanations} instances, threshold {args.threshold}; "
          f"os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (machine shared with others)")

    model_env = {"VIGIL_MODEL_URI": str(model_path), "VIGIL_MODEL_FORMAT": "sklearn", "VIGIL_MODEL_NAME": "iris"}
    with serve_component("model", model_env, ready_path="/v2/health/ready", timeout=120) as model_url:
        t = time.perf_counter()
        from vigil_detectors.explainer.train import train_explainer

        artifact = train_explainer(x, {"threshold": args.threshold, "seed": 0}, str(model_path), work / "explainer",
                                   FEATURES, {}, model_format="sklearn")
        print(f"train_explainer (incl. alibi/TF import): {time.perf_counter() - t:.1f} s")

        env = {"VIGIL_EXPLAINER_ARTIFACT": str(artifact), "VIGIL_EXPLAINER_MODEL_URL": model_url,
               "VIGIL_EXPLAINER_MODEL_NAME": "iris", "VIGIL_EXPLAINER_FEATURE_NAMES": json.dumps(FEATURES),
               "VIGIL_EXPLAINER_THRESHOLD": str(args.threshold), "VIGIL_EXPLAINER_SEED": "0"}
        t = time.perf_counter()
        with serve_component("explainer", env, timeout=180) as url, httpx.Client(base_url=url, timeout=120) as client:
            print(f"explainer service start-up to ready: {time.perf_counter() - t:.1f} s")
            client.post("/explain", json=v2_request(x[0]))  # warm-up

            wall, server, calls, rows, met = [], [], [], [], 0
            for i in idx:
                t = time.perf_counter()
                resp = client.post("/explain", json=v2_request(x[i]))
                wall.append(time.perf_counter() - t)
                out = resp.json()
                assert resp.status_code == 200, out
                server.append(out["durationSeconds"])
                calls.append(out["modelCalls"])
                rows.append(out["modelRows"])
                met += bool(out["thresholdMet"])

            results: list[float] = []

            def caller(part):
                for i in part:
                    r = client.post("/explain", json=v2_request(x[i]))
                    assert r.status_code == 200, r.text

            t = time.perf_counter()
            threads = [threading.Thread(target=caller, args=(idx[k::2],)) for k in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            results.append(len(idx) / (time.perf_counter() - t))

        # the same explanations in this process, model called directly (no HTTP)
        from alibi.saving import load_explainer

        local = load_explainer(str(artifact), lambda r: model.predict(np.asarray(r, dtype=np.float64)))
        local_s = []
        for i in idx:
            t = time.perf_counter()
            local.explain(x[i], threshold=args.threshold)
            local_s.append(time.perf_counter() - t)

    print(f"\nPOST /explain, one caller, {len(idx)} different instances:")
    print(row("seconds per explanation (client wall clock)", wall))
    print(row("seconds per explanation (service, explain only)", server))
    print(row("model calls per explanation", calls, "{:.0f}"))
    print(row("rows sent to the model per explanation", rows, "{:.0f}"))
    print(f"  anchors meeting the {args.threshold} precision threshold: {met}/{len(idx)}")
    per_call = [(s - loc) / c for s, loc, c in zip(server, local_s, calls, strict=False) if c]
    print("\nin-process, model called directly (no HTTP):")
    print(row("seconds per explanation", local_s))
    print(f"  => cost of one V2 call over loopback (service - direct) / calls: median "
          f"{statistics.median(per_call) * 1000:.2f} ms")
    print(f"\ntwo callers at once (2 explainer copies): {results[0]:.2f} explanations/s "
          f"(one caller: {1 / statistics.median(wall):.2f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
