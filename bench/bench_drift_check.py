"""The drift check's cost: time per 1,000-row window per statistic, and the drift service's RSS at ready.

(a) In-process, 5,000 reference rows of 4 features (bench_drift's shapes), windows of
1,000: median time of `DriftSuite.check` per statistic, and of alibi-detect's
`KSDrift.predict` / `TabularDrift.predict` on the same rows when alibi-detect is installed
(run in a subprocess, so TensorFlow stays out of this one), with the largest p-value
difference between the two.

(b) ``vigil serve drift`` (a subprocess, fitted from a reference CSV of the same shape) —
its resident set size once ``/readyz`` answers 200, after one checked window, and
whether TensorFlow is mapped into it (``/proc/PID/maps``). `--tree DIR` measures another
checkout (e.g. the one before this change) with the same data.

    python bench/bench_drift_check.py
    python bench/bench_drift_check.py --tree /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES = ["f0_normal", "f1_lognormal", "f2_uniform", "f3_exponential"]

ALIBI = r"""
import json, sys, time, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from alibi_detect.cd import KSDrift
d = np.load(sys.argv[1])
ref, windows = d["ref"], d["windows"]
ks = KSDrift(ref, p_val=0.05)
times, p = [], []
for w in windows:
    t = time.perf_counter(); out = ks.predict(w)["data"]; times.append(time.perf_counter() - t)
    p.append(out["p_val"].tolist())
print(json.dumps({"median_ms": float(np.median(times) * 1e3), "p": p}))
"""


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.normal(0, 1, n), rng.lognormal(0, 0.5, n), rng.uniform(0, 1, n),
                            rng.exponential(1.0, n)])


def check_times(repeats: int) -> None:
    sys.path[:0] = [str(REPO), str(REPO / "detectors")]
    from vigil_detectors.drift.statistics import fit_statistic, names

    rng = np.random.default_rng(0)
    ref = draw(rng, 5000)
    windows = [draw(rng, 1000) for _ in range(repeats)]
    print(f"(a) check of a 1,000-row window, 5,000 reference rows x 4 features, median of {repeats}")
    ours_p = None
    for name in names():
        suite = fit_statistic(ref, kind=name)
        times = []
        for w in windows:
            t = time.perf_counter()
            result = suite.check(w)
            times.append(time.perf_counter() - t)
        if name == "ks":
            ours_p = [suite.check(w).p_values for w in windows]
        print(f"    vigil {name:<14} {np.median(times) * 1e3:7.2f} ms   ({', '.join(result.tests)})")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.npz"
        np.savez(data, ref=ref, windows=np.array(windows))
        out = subprocess.run([sys.executable, "-c", ALIBI, str(data)], capture_output=True, text=True)
    if out.returncode:
        print(f"    alibi-detect KSDrift: not measured ({out.stderr.strip().splitlines()[-1:]})")
        return
    alibi = json.loads(out.stdout.strip().splitlines()[-1])
    diff = float(np.max(np.abs(np.array(alibi["p"]) - np.array(ours_p))))
    print(f"    alibi-detect KSDrift.predict {alibi['median_ms']:7.2f} ms   (largest p-value difference {diff:.1e})")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def service_rss(tree: Path) -> None:
    import httpx
    import pandas as pd

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference.csv"
        pd.DataFrame(draw(rng, 5000), columns=FEATURES).to_csv(ref, index=False)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / d) for d in ("", "operator", "detectors")),
               "VIGIL_DRIFT_REFERENCE": str(ref), "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES),
               "VIGIL_DRIFT_WINDOW_SIZE": "1000", "VIGIL_DRIFT_MAX_AGE_SECONDS": "0"}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "vigil", "serve", "drift", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() - started > 300:
                    raise SystemExit(f"drift service from {tree} did not become ready")
                time.sleep(0.05)
            ready_s, at_ready = time.monotonic() - started, rss_mb(proc.pid)
            headers = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/bench",
                       "ce-type": "dev.vigil.inference.request", "content-type": "application/json"}
            r = httpx.post(url + "/", headers=headers, content=json.dumps({"instances": draw(rng, 1000).tolist()}))
            assert r.status_code == 200, r.text
            after = rss_mb(proc.pid)
            tf = any("tensorflow" in line for line in Path(f"/proc/{proc.pid}/maps").read_text().splitlines())
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"(b) vigil serve drift from {tree}: ready in {ready_s:.1f} s, RSS {at_ready:.0f} MB at ready, "
          f"{after:.0f} MB after one window; TensorFlow loaded: {'yes' if tf else 'no'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--tree", type=Path, default=REPO, help="checkout whose drift service (b) measures")
    args = ap.parse_args()
    check_times(args.repeats)
    service_rss(args.tree.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
