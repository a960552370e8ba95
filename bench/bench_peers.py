"""Issue 13's table in one run: Vigil next to its peer and the in-process library ceiling.

    python bench/bench_peers.py                    # every row (~5-8 min: TensorFlow, training, the demo stack)
    python bench/bench_peers.py --skip-memory      # without the RSS row (bench_memory's demo stack)
    python bench/bench_peers.py --only drift       # drift rows only (no TensorFlow)

Rows (issue 13): outlier 1 row/event at C=64 and 64 rows/event at C=16; drift 1 row/event
and 100 rows/event at C=16; RSS at ready per component of one tabular monitor.

- **Peer**: Seldon Core v1.17.1's alibi-detect-server, measured in issue 13 on the same
  artifacts with the same alibi-detect/TensorFlow (server on core 0, client on core 1,
  medians of three interleaved rounds on a quiet machine). Constants below; not re-run here.
- **Vigil**: the real services, each pinned to core 0, loaded from core 1 — drift with wrk
  (`bench_drift.DriftService` / `bench_drift.measure`: 5,000 reference rows of 4 features,
  window 1000, checkpointing on), outlier with bench_outlier's keep-alive client
  (`bench_outlier.run_case`: an OutlierVAE trained on iris with `vigil train`, batching at
  the spec defaults). Each row gives events/s (wall clock) and events per CPU-second of the
  service (from /proc/PID/stat: the figure a shared machine does not move), and the ratio
  to the peer for both.
- **Ceiling**: alibi-detect called in-process on the same rows, pinned to core 0 in a
  subprocess — ``KSDrift.predict`` on a 1000-row window (rows/s = 1000 / its time; the
  library has no ingest, so one figure covers both drift rows; CPU time of the call) and
  ``OutlierVAE.predict`` on 1 and 64 rows (`bench_outlier.predict_costs`).
- **Floor**: `bench/floor_app.py`, a do-nothing app answering as each detector answers, under
  uvicorn as the services run, pinned and loaded the same way (drift's wrk at C=16, outlier's
  client at C=64): the 1-row rate no detector on uvicorn can pass here. Printed with the CPU
  per event it leaves for the frame and the detector under each 1-row goal, next to what they
  take now.
- **RSS**: `bench/bench_memory.py --json` (the demo's iris monitor, every component as
  `vigil up` runs it): VmRSS at ready per service.

On a machine shared with other work the wall-clock figures are lower bounds; say so when
quoting them. Prints the table; asserts nothing.
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
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_drift  # noqa: E402 - after the path
import bench_outlier  # noqa: E402
from _common import pinned  # noqa: E402

#: Seldon Core v1.17.1 alibi-detect-server, issue 13 (same artifacts), and the goals: (figure, unit) per row,
#: from where each component's bench keeps them (bench_outlier.PEER, bench_drift.PEER).
_UNIT = {"events/s": "ev/s", "rows/s": "rows/s"}
PEER = {"outlier-1": (bench_outlier.PEER[(1, 64)][1], _UNIT[bench_outlier.PEER[(1, 64)][0]]),
        "outlier-64": (bench_outlier.PEER[(64, 16)][1], _UNIT[bench_outlier.PEER[(64, 16)][0]]),
        "drift-1": (bench_drift.PEER[1][1], _UNIT[bench_drift.PEER[1][0]]),
        "drift-100": (bench_drift.PEER[100][1], _UNIT[bench_drift.PEER[100][0]])}
GOAL = {"outlier-1": bench_outlier.PEER[(1, 64)][2], "outlier-64": bench_outlier.PEER[(64, 16)][2],
        "drift-1": bench_drift.PEER[1][2], "drift-100": bench_drift.PEER[100][2]}
#: RSS at ready of one tabular monitor (drift + explainer + outlier), issue 13's goal, MB.
RSS_GOAL_MB = 1_200
LABELS = {"outlier-1": "outlier, 1 row/event, C=64", "outlier-64": "outlier, 64 rows/event, C=16",
          "drift-1": "drift, 1 row/event, C=16", "drift-100": "drift, 100 rows/event, C=16"}


def drift_ceiling() -> None:
    """(In a pinned subprocess.) alibi-detect KSDrift.predict on bench_drift's reference and windows."""
    import timeit

    import numpy as np
    from alibi_detect.cd import KSDrift

    rng = np.random.default_rng(0)
    ref = bench_drift.draw(rng, 5000)  # the service's reference (same seed, same draw)
    windows = [bench_drift.draw(rng, 1000) for _ in range(8)]
    ks = KSDrift(ref, p_val=0.05, correction="bonferroni")
    ks.predict(windows[0])
    it = iter(range(10**9))
    seconds = min(timeit.repeat(lambda: ks.predict(windows[next(it) % 8]), number=20, repeat=3,
                                timer=time.process_time)) / 20  # CPU time: a busy machine does not inflate it
    print(json.dumps({"predict_ms": seconds * 1e3, "rows_per_s": 1000 / seconds}))


def _pinned_json(args: list[str], cpu: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run(pinned([sys.executable, __file__, *args], cpu), env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_drift(args, work: Path) -> dict[str, Any]:
    service = bench_drift.DriftService(work, "ks", args.service_cpu)
    out: dict[str, Any] = {}
    try:
        out["rss_ready_mib"] = service.wait_ready()
        for rows in (1, 100):
            r = bench_drift.measure(service, rows, args.duration, 16, args.client_cpu)
            out[f"drift-{rows}"] = {"events_per_s": r["events_per_s"], "events_per_cpu_s": r["events_per_cpu_s"],
                                    "rows": rows, "service_cpu": r["service_cpu"]}
            print(f"  measured drift {rows} row(s)/event: {r['events_per_s']:,.0f} ev/s, "
                  f"{r['events_per_cpu_s']:,.0f} ev per CPU-s (service CPU {r['service_cpu']:.0%})", flush=True)
    finally:
        service.stop()
    ceiling = _pinned_json(["--drift-ceiling"], args.service_cpu)
    out["ceiling"] = ceiling
    print(f"  alibi-detect KSDrift.predict, 1000-row window: {ceiling['predict_ms']:.2f} ms "
          f"= {ceiling['rows_per_s']:,.0f} rows/s", flush=True)
    return out


def run_outlier(args, work: Path) -> dict[str, Any]:
    artifact = Path(args.artifact) if args.artifact else bench_outlier.train_artifact(work)
    out: dict[str, Any] = {}
    for key, rows, c, events in (("outlier-1", 1, 64, args.outlier_events),
                                 ("outlier-64", 64, 16, max(160, args.outlier_events // 16))):
        r = bench_outlier.run_case(artifact, rows=rows, concurrency=c, events=events, cpu=args.service_cpu)
        out[key] = {"events_per_s": r["events_per_s"], "events_per_cpu_s": r["events_per_cpu_s"], "rows": rows,
                    "service_cpu": r["cpu_share"]}
        out.setdefault("rss_ready_mb", r.get("rss_ready_mb"))
        print(f"  measured outlier {rows} row(s)/event C={c}: {r['events_per_s']:,.0f} ev/s, "
              f"{r['events_per_cpu_s']:,.0f} ev per CPU-s (service CPU {r['cpu_share']:.0%})", flush=True)
    costs = bench_outlier.predict_costs(artifact, args.service_cpu)
    one, many = costs["alibi compiled 1"], costs["alibi compiled 64"]  # alibi-detect's predict, Keras model compiled
    out["ceiling"] = {"outlier-1": 1000 / one, "outlier-64": 64 * 1000 / many, "costs_ms": costs}
    print(f"  alibi-detect OutlierVAE.predict (compiled): 1 row {one:.2f} ms, 64 rows {many:.2f} ms", flush=True)
    if "vigil numpy 1" in costs:
        print(f"  Vigil's NumPy scorer (what the service runs): 1 row {costs['vigil numpy 1']:.3f} ms, 64 rows "
              f"{costs['vigil numpy 64']:.3f} ms", flush=True)
    return out


def run_floor(args, work: Path) -> dict[str, dict[str, float]]:
    """`floor_app.py` in each mode, pinned like the services, under the load of its 1-row row."""
    import asyncio

    from _common import cpu_seconds, stop

    from vigil.transport.server import wait_listening

    out = {}
    for key, mode in (("drift-1", "drift"), ("outlier-1", "outlier")):
        port = bench_outlier.free_port()
        proc = subprocess.Popen(pinned([sys.executable, str(REPO / "bench" / "floor_app.py"), "--mode", mode,
                                        "--port", str(port)], args.service_cpu))
        try:
            if not wait_listening("127.0.0.1", port, 30):
                sys.exit(f"floor_app.py --mode {mode} did not start")
            if mode == "drift":
                r, share = bench_drift.load(f"http://127.0.0.1:{port}", proc.pid, work, 1, args.duration, 16,
                                            args.client_cpu)
                events_per_s = (r["requests"] - r["non2xx"]) / r["seconds"]
                per_cpu = events_per_s / max(share, 1e-9)
            else:
                requests = bench_outlier.build_requests(port)
                asyncio.run(bench_outlier.drive(port, requests, 16, 800))
                sent = max(1, args.outlier_events // 64) * 64
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                asyncio.run(bench_outlier.drive(port, requests, 64, sent))
                wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
                events_per_s, per_cpu = sent / wall, sent / cpu
        finally:
            stop(proc)
        out[key] = {"events_per_s": events_per_s, "events_per_cpu_s": per_cpu}
        print(f"  floor ({mode} answers, uvicorn, no work): {events_per_s:,.0f} ev/s, {per_cpu:,.0f} ev per CPU-s",
              flush=True)
    return out


def budget(results: dict[str, Any], floor: dict[str, dict[str, float]]) -> None:
    """Per 1-row row: the CPU per event the goal leaves above the floor, and what Vigil's frame and detector take."""
    print("\n1-row rows against the uvicorn floor (microseconds of service CPU per event):")
    for key in ("drift-1", "outlier-1"):
        if key not in floor or key not in results:
            continue
        base = 1e6 / floor[key]["events_per_cpu_s"]
        goal, now = 1e6 / GOAL[key], 1e6 / results[key]["events_per_cpu_s"]
        print(f"  {LABELS[key]:<30} uvicorn {base:5.1f}; the goal allows {goal:5.1f} = {goal - base:5.1f} for the "
              f"frame and detector; they take {now - base:5.1f} now ({(now - base) / max(goal - base, 1e-9):.1f}x)")


def run_memory(work: Path) -> Optional[dict[str, float]]:
    path = work / "memory.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_memory.py"), "--json", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  bench_memory failed (exit {done.returncode}): {done.stderr[-800:]}")
        return None
    results = json.loads(path.read_text())
    return {name: r["ready"] / 2**20 for name, r in results.items() if "ready" in r}


def _fmt(x: float, unit: str) -> str:
    return f"{x / 1000:,.1f}k {unit}" if x >= 10_000 else f"{x:,.0f} {unit}"


def table(results: dict[str, Any], memory: Optional[dict[str, float]]) -> None:
    print("\nissue 13 table (peer: Seldon Core v1.17.1 alibi-detect-server, same artifacts; Vigil measured now, "
          "service on one core)")
    head = (f"{'case':<30} {'peer':>12} {'Vigil wall':>13} {'ratio':>6} {'Vigil /CPU-s':>13} {'ratio':>6} "
            f"{'ceiling':>13} {'goal':>13}")
    print(head)
    print("-" * len(head))
    for key, label in LABELS.items():
        r = results.get(key)
        peer, unit = PEER[key]
        if r is None:
            print(f"{label:<30} {_fmt(peer, unit):>12} {'(not run)':>13}")
            continue
        scale = r["rows"] if unit == "rows/s" else 1
        wall, per_cpu = r["events_per_s"] * scale, r["events_per_cpu_s"] * scale
        ceiling = results.get("ceiling", {}).get(key)
        print(f"{label:<30} {_fmt(peer, unit):>12} {_fmt(wall, unit):>13} {wall / peer:>5.1f}x "
              f"{_fmt(per_cpu, unit):>13} {per_cpu / peer:>5.1f}x "
              f"{_fmt(ceiling, unit) if ceiling else '-':>13} {_fmt(GOAL[key], unit):>13}")
    if memory:
        parts = {k: v for k, v in memory.items() if k in ("drift", "explainer", "outlier")}
        total = sum(parts.values())
        print(f"{'RSS at ready, one tabular monitor':<30} {'-':>12} {total:>9,.0f} MiB "
              f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(parts.items()))}); goal <= {RSS_GOAL_MB:,} MB")
        print("  every service at ready (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(memory.items())))
    print("ratios: Vigil / peer. 'Vigil /CPU-s' = events per CPU-second of the service x rows: its rate on a core "
          "of its own; 'wall' is a lower bound on a shared machine.")
    print("ceiling: drift = alibi-detect KSDrift.predict on 1000-row windows, rows per CPU-second (the library "
          "has no ingest: one figure for both rows); outlier = OutlierVAE.predict (compiled) on 1 / 64 rows.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["drift", "outlier"], help="run one component's rows")
    ap.add_argument("--skip-memory", action="store_true", help="skip the RSS row (bench_memory's demo stack)")
    ap.add_argument("--skip-floor", action="store_true", help="skip the uvicorn floor (bench/floor_app.py)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per drift wrk run")
    ap.add_argument("--outlier-events", type=int, default=8000, help="events of the outlier 1-row case")
    ap.add_argument("--artifact", help="an OutlierVAE directory (default: train one on iris)")
    ap.add_argument("--service-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--drift-ceiling", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.drift_ceiling:
        drift_ceiling()
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"service on CPU {args.service_cpu}, clients on CPU {args.client_cpu}", flush=True)
    started = time.monotonic()
    results: dict[str, Any] = {"ceiling": {}}
    memory = None
    with tempfile.TemporaryDirectory(prefix="vigil-bench-peers-") as tmp:
        work = Path(tmp)
        if args.only in (None, "drift"):
            drift = run_drift(args, work)
            results.update({k: v for k, v in drift.items() if k.startswith("drift-")})
            results["ceiling"].update({"drift-1": drift["ceiling"]["rows_per_s"],
                                       "drift-100": drift["ceiling"]["rows_per_s"]})
        if args.only in (None, "outlier"):
            outlier = run_outlier(args, work)
            results.update({k: v for k, v in outlier.items() if k.startswith("outlier-")})
            results["ceiling"].update({k: v for k, v in outlier["ceiling"].items() if k.startswith("outlier-")})
        floor = run_floor(args, work) if not args.skip_floor else {}
        if args.only is None and not args.skip_memory:
            print("  RSS at ready: bench/bench_memory.py (the demo's iris monitor) ...", flush=True)
            memory = run_memory(work)
    table(results, memory)
    budget(results, floor)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
