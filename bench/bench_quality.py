"""Quality detector benchmark: ingest rate at 100 rows per event, and RSS.

The quality service runs as ``vigil serve quality`` in a subprocess pinned to CPU 0
(``taskset -c 0``), its baseline profiled at start-up from 5,000 reference rows of 8
features (6 numeric, 1 integer, 1 categorical with a value list), window 1000, history on.
``wrk`` (Debian package) pinned to CPU 1 keeps connections busy with binary-mode
CloudEvents — as bench/bench_drift.py does (its wrk driver is reused) — whose V1 bodies
hold 100 named rows each (objects keyed by feature name, the category as a string, about
1 % nulls, a few out-of-range values, unseen categories and extra keys, so every check has
work). Printed: events/s, rows/s, the service's CPU use and events per CPU-second, the
client's CPU use, a cross-check that the service counted every row wrk got a 2xx for, and
the service's RSS at ready and its peak after the run (``VmRSS`` / ``VmHWM``).

    python bench/bench_quality.py
    python bench/bench_quality.py --duration 20 --connections 32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

NUMERIC = ["f0", "f1", "f2", "f3", "f4", "f5"]
FEATURES = [*NUMERIC, "count", "color"]
COLORS = ["red", "green", "blue", "black"]


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.normal(size=(n, len(NUMERIC))), rng.poisson(3, n), rng.integers(0, 4, n)]).astype(float)


def rows_of(rng: np.random.Generator, x: np.ndarray) -> list[dict]:
    rows = []
    for r in x:
        row = {n: float(v) for n, v in zip(NUMERIC, r[:6], strict=True)}
        row["count"] = int(r[6])
        row["color"] = COLORS[int(r[7])]
        u = rng.random()
        if u < 0.01:
            row["f1"] = None
        elif u < 0.015:
            row["f2"] = 1e6
        elif u < 0.02:
            row["color"] = "purple"
        elif u < 0.025:
            row["note"] = "extra"
        rows.append(row)
    return rows


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    import httpx
    from _common import cpu_seconds as _cpu_seconds
    from bench_drift import _wrk

    from tests.servers import free_port, metric_value, serve_command, wait_until

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--service-cpu", default="0")
    p.add_argument("--client-cpu", default="1")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-quality-"))
    rng = np.random.default_rng(0)
    np.save(work / "reference.npy", draw(rng, 5000))
    env = {**os.environ, "VIGIL_QUALITY_REFERENCE": str(work / "reference.npy"),
           "VIGIL_QUALITY_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_QUALITY_CATEGORICAL": json.dumps({"7": COLORS}),
           "VIGIL_QUALITY_WINDOW_SIZE": "1000", "VIGIL_QUALITY_STATE_DIR": str(work / "state"),
           "VIGIL_QUALITY_MONITOR": "bench", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command("quality", port)
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", args.service_cpu, *cmd]
    log = open(work / "quality.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def counted() -> tuple[float, float]:
        """(rows counted, duplicate events dropped): wrk's script numbers ce-ids from 1 on every run, so the
        measured run repeats the warm-up's ids and the frame drops those as retries (202, not counted)."""
        text = httpx.get(url + "/metrics", timeout=10).text
        return (metric_value(text, "vigil_quality_instances_total") or 0.0,
                metric_value(text, "vigil_events_duplicate_total") or 0.0)

    try:
        def ready():
            if proc.poll() is not None:
                sys.exit(f"quality service exited: {(work / 'quality.log').read_text()[-3000:]}")
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=120, what="quality service")
        ready_rss, _ = rss_mib(proc.pid)
        rows = 100
        body = work / "events-100.jsonl"  # 1,000 different events, sent round-robin
        body.write_text("\n".join(json.dumps({"instances": rows_of(rng, draw(rng, rows))}) for _ in range(1000)) + "\n")
        print(f"service pid {proc.pid} on CPU {args.service_cpu}; wrk on CPU {args.client_cpu}, "
              f"{args.connections} connections, {args.duration:g} s; {rows} named rows per event, "
              f"{len(FEATURES)} features")
        _wrk(url, body, 2, args.connections, args.client_cpu)  # warm-up
        (seen0, dup0), cpu0, t0 = counted(), _cpu_seconds(proc.pid), time.monotonic()
        r = _wrk(url, body, args.duration, args.connections, args.client_cpu)
        service_cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        seen1, dup1 = counted()
        got, duplicates = seen1 - seen0, int(dup1 - dup0)
        ok = r["requests"] - r["non2xx"] - duplicates
        eps = ok / r["seconds"]
        now_rss, peak_rss = rss_mib(proc.pid)
        status = httpx.get(url + "/status").json()["quality"]
        res = {"rows": rows, "duplicates": duplicates, "events_per_s": eps, "rows_per_s": eps * rows, "service_cpu": service_cpu,
               "events_per_cpu_s": eps / max(service_cpu, 1e-9), "client_cpu": r["client_cpu"], "non2xx": r["non2xx"],
               "counted": got, "acked_rows": ok * rows, "rss_ready_mib": ready_rss, "rss_after_mib": now_rss,
               "rss_peak_mib": peak_rss, "windows": status["windows"], "latency_avg": r["latency_avg"],
               "latency_p99": r["latency_p99"]}
        print(f"  {rows} rows/event: {eps:,.0f} events/s  {eps * rows:,.0f} rows/s   service CPU {service_cpu:.0%} "
              f"({res['events_per_cpu_s']:,.0f} events per CPU-s)   client CPU {r['client_cpu']:.0%}   "
              f"latency avg {r['latency_avg']} p99 {r['latency_p99']}")
        lost = res["acked_rows"] - got
        verdict = "ok" if -args.connections * rows <= lost <= 0 else "MISMATCH"
        print(f"      non-2xx {r['non2xx']}, socket errors: {r['errors'] or 'none'}, {duplicates} repeated ce-ids "
              f"dropped; rows counted {got:,.0f} vs acknowledged {res['acked_rows']:,} ({verdict})")
        print(f"  windows reported: {status['windows']:,} (last: {status['violations']} violations: "
              f"{', '.join(status['featuresViolated']) or '-'})")
        print(f"  RSS: {ready_rss:.0f} MiB at ready, {now_rss:.0f} MiB after the run, peak {peak_rss:.0f} MiB")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
