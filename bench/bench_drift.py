"""Drift detector benchmark: ingest rate and detection quality, in one run.

(a) **Ingest rate.** The drift service runs as ``vigil serve drift`` in a subprocess
pinned to CPU 0 (``taskset -c 0``; uvicorn with uvloop + httptools), fitted from 5,000
reference rows of 4 features, window 1000 tumbling, checkpointing on (every event is in
the append log before its 202). A load client — ``wrk`` (Debian package) with a Lua
script that gives each event its own ``ce-id`` — pinned to CPU 1 keeps a fixed number
of connections busy with binary-mode CloudEvents (V2 bodies), first one row per event,
then 100 rows per event; once with KS on every feature (case ``ks``), once with a mix of
statistics (case ``mix``: ks, psi, hellinger, wasserstein, one feature each). Printed: the
service's RSS once ready, events/s, rows/s, the service's CPU use (so a
busy shared machine shows), events per CPU-second of the service, the client's CPU use
(well under 100 % means the client was not the bottleneck), and a cross-check that the
service counted every instance wrk got a 2xx for.

(b) **Detection quality** (through the same service code over HTTP, in-process servers):
- stationary streams: `--refs` reference draws × `--windows-per-ref` windows of 1000
  fresh instances from the same distribution; share of windows flagged (expected at or
  below the configured p-value with Bonferroni);
- a mean shift of 0.5 standard deviations in one feature (each feature in turn), starting
  at a random point inside a window: share of trials detected in that (mixed) window, and
  by the end of the first full window after the shift starts.

    python bench/bench_drift.py                 # everything (~1-2 min)
    python bench/bench_drift.py --skip-quality  # ingest only
    python bench/bench_drift.py --duration 20 --connections 64

Targets (issue 2): ≥5,000 events/s with 1 row/event, ≥100,000 instances/s with 100 rows/event.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import cpu_seconds, pinned, rss_mib, stop, wrk  # noqa: E402 - after the path

FEATURES = ["f0_normal", "f1_lognormal", "f2_uniform", "f3_exponential"]


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four differently shaped features (KS is distribution-free; the shapes make the shift test honest)."""
    return np.column_stack([rng.normal(0, 1, n), rng.lognormal(0, 0.5, n), rng.uniform(0, 1, n),
                            rng.exponential(1.0, n)])


def feature_std(rng: np.random.Generator) -> np.ndarray:
    return draw(rng, 200_000).std(axis=0)


# -- (a) ingest -----------------------------------------------------------------------------------

LUA = r"""
-- one JSON body per line (distinct rows, so windows hold realistic data); each event gets its own ce-id,
-- unique across runs too (the service drops a ce-id it already processed as a redelivery)
local counter = 0
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-type"] = "dev.vigil.inference.request"
wrk.headers["ce-source"] = "/bench/logger"
wrk.headers["ce-modelname"] = "bench"

request = function()
  counter = counter + 1
  wrk.headers["ce-id"] = "%(tag)s-" .. counter
  wrk.headers["ce-inferenceid"] = "inf-" .. counter
  return wrk.format(nil, nil, nil, bodies[counter %% #bodies + 1])
end
"""


def _instances_total(url: str) -> float:
    import httpx

    from tests.servers import metric_value

    return metric_value(httpx.get(url + "/metrics", timeout=10).text, "vigil_drift_instances_total") or 0.0


def _wrk(url: str, body_path: Path, duration: float, connections: int, cpu: str) -> dict:
    script = body_path.with_suffix(".lua")
    script.write_text(LUA % {"bodies": str(body_path), "tag": f"bench-{time.time_ns()}"})
    return wrk(url, script, duration, connections, cpu)


#: issue 13's peer figures (Seldon Core v1.17.1 alibi-detect-server, same artifacts) and goals, by rows per
#: event at 16 connections: (unit, peer, goal)
PEER = {1: ("events/s", 3419.0, 13700.0), 100: ("rows/s", 29500.0, 147000.0)}

#: Ingest cases: the statistic per feature (VIGIL_DRIFT_STATISTIC, VIGIL_DRIFT_STATISTICS).
CASES = {
    "ks": ("ks", {}),
    "mix": ("ks", {"f1_lognormal": "psi", "f2_uniform": "hellinger", "f3_exponential": "wasserstein"}),
}


class DriftService:
    """``vigil serve drift`` in a subprocess pinned to `cpu`: fitted from 5,000 reference rows of
    4 features (`draw`), window 1000 tumbling, checkpointing on, statistics of `case`."""

    def __init__(self, work: Path, case: str = "ks", cpu: str = "0"):
        from tests.servers import free_port, serve_command

        rng = np.random.default_rng(0)
        np.save(work / "reference.npy", draw(rng, 5000))
        default, overrides = CASES[case]
        env = {**os.environ, "VIGIL_DRIFT_REFERENCE": str(work / "reference.npy"),
               "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_DRIFT_WINDOW_SIZE": "1000",
               "VIGIL_DRIFT_STATE_DIR": str(work / f"state-{case}-{time.time_ns()}"), "VIGIL_DRIFT_MONITOR": "bench",
               "VIGIL_DRIFT_STATISTIC": default, "VIGIL_DRIFT_STATISTICS": json.dumps(overrides),
               "PYTHONUNBUFFERED": "1"}
        self.work, self.case = work, case
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = work / f"drift-{case}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(pinned(serve_command("drift", int(self.url.rsplit(":", 1)[1])), cpu), env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self) -> float:
        """Wait for /readyz; the RSS at ready (MiB)."""
        import httpx

        from tests.servers import wait_until

        def ready():
            if self.proc.poll() is not None:
                sys.exit(f"drift service exited: {self.log_path.read_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=120, what="drift service")
        return rss_mib(self.pid)

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()


def load(url: str, pid: int, work: Path, rows: int, duration: float, connections: int,
         client_cpu: str) -> tuple[dict, float]:
    """wrk's result and the server's CPU share for `rows`-row events against `url` (served by `pid`)
    for `duration` s after a 2 s warm-up; bench_peers loads its floor app with it too."""
    rng = np.random.default_rng(rows)
    from vigil.events import v2_request

    body = work / f"events-{rows}.jsonl"  # 1,000 different events, sent round-robin
    body.write_text("\n".join(json.dumps(v2_request(draw(rng, rows))) for _ in range(1000)) + "\n")
    _wrk(url, body, 2, connections, client_cpu)  # warm-up
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    r = _wrk(url, body, duration, connections, client_cpu)
    return r, (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


def measure(service: DriftService, rows: int, duration: float, connections: int, client_cpu: str) -> dict:
    """One ingest case against a ready service: `rows` per event, wrk with `connections` for `duration` s."""
    seen0 = _instances_total(service.url)
    r, service_cpu = load(service.url, service.pid, service.work, rows, duration, connections, client_cpu)
    counted = _instances_total(service.url) - seen0
    ok = r["requests"] - r["non2xx"]
    eps = ok / r["seconds"]
    return {"rows": rows, "events_per_s": eps, "instances_per_s": eps * rows, "service_cpu": service_cpu,
            "events_per_cpu_s": eps / max(service_cpu, 1e-9), "client_cpu": r["client_cpu"],
            "non2xx": r["non2xx"], "errors": r["errors"], "counted": counted, "acked_rows": ok * rows,
            "latency_avg": r["latency_avg"], "latency_p99": r["latency_p99"]}


def bench_ingest(args, work: Path, case: str = "ks") -> list[dict]:
    import httpx

    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    service = DriftService(work, case, args.service_cpu)
    results = []
    try:
        rss = service.wait_ready()
        loops = Path(f"/proc/{service.pid}/maps").read_text()
        tests = httpx.get(service.url + "/status").json()["drift"]["tests"]
        print(f"case {case}: statistics {dict(zip(FEATURES, tests, strict=True))}; service RSS at ready {rss:.0f} MiB")
        print(f"service pid {service.pid} on CPU {args.service_cpu} (uvloop: {'uvloop' in loops}, "
              f"httptools: {'httptools' in loops}); wrk on CPU {args.client_cpu}, {args.connections} connections, "
              f"{args.duration:g} s per run")
        for rows in (1, 100):
            res = measure(service, rows, args.duration, args.connections, args.client_cpu)
            results.append(res)
            eps = res["events_per_s"]
            print(f"  {rows:>3} row(s)/event: {eps:>9,.0f} events/s  {eps * rows:>11,.0f} rows/s   "
                  f"service CPU {res['service_cpu']:5.0%} ({res['events_per_cpu_s']:,.0f} events per CPU-s)   "
                  f"client CPU {res['client_cpu']:4.0%}   latency avg {res['latency_avg']} p99 {res['latency_p99']}")
            # wrk's last in-flight requests may be cut off at the end of the run: allow for the connections
            lost = res["acked_rows"] - res["counted"]
            print(f"      non-2xx {res['non2xx']}, socket errors: {res['errors'] or 'none'}; "
                  f"instances counted by the service {res['counted']:,.0f} vs acknowledged {res['acked_rows']:,} "
                  f"({'ok' if -args.connections * rows <= lost <= 0 else 'MISMATCH'})")
        from tests.servers import metric_value

        text = httpx.get(service.url + "/metrics").text
        checks = metric_value(text, "vigil_drift_check_duration_seconds_count") or 0
        check_s = metric_value(text, "vigil_drift_check_duration_seconds_sum") or 0
        status = httpx.get(service.url + "/status").json()["drift"]
        print(f"  windows checked during the runs: {status['windows']:,}, mean check {check_s / max(checks, 1) * 1e3:.2f} ms "
              f"(window 1000 x 4 vs 5000 reference rows; at 100 rows/event one check per 10 events)")
    finally:
        service.stop()
    return results


# -- (b) detection quality ------------------------------------------------------------------------

class _Client:
    def __init__(self, url: str):
        import httpx
        from cloudevents.core.bindings import http as ce_http
        from cloudevents.core.v1.event import CloudEvent

        self.http = httpx.Client(base_url=url, timeout=60)
        self._ce, self._event = ce_http, CloudEvent
        self.n = 0

    def send(self, rows: np.ndarray) -> list[dict]:
        """Send rows in events of ≤100; return the drift results of checks they completed."""
        from vigil.events import REQUEST, v2_request

        out = []
        for i in range(0, len(rows), 100):
            self.n += 1
            msg = self._ce.to_binary_event(self._event(
                attributes={"type": REQUEST, "source": "/bench", "id": f"q{self.n}",
                            "datacontenttype": "application/json"}, data=v2_request(rows[i:i + 100])))
            r = self.http.post("/", headers=dict(msg.headers), content=msg.body)
            if r.status_code == 200:
                out.append(r.json()["drift"])
            elif r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text}")
        return out


def bench_quality(args, work: Path) -> dict:
    import logging

    from tests.servers import serve_app, wait_until
    from vigil_detectors.drift.service import create_app
    from vigil_detectors.drift.settings import DriftSettings

    logging.getLogger("vigil.drift").setLevel(logging.ERROR)  # no "state_dir not set" warning per service
    size = 1000
    std = feature_std(np.random.default_rng(123))

    def service(ref: np.ndarray, name: str):
        np.save(work / f"{name}.npy", ref)
        return serve_app(create_app(DriftSettings(reference=str(work / f"{name}.npy"), feature_names=FEATURES,
                                                  window_size=size, p_value=args.p_value,
                                                  correction="bonferroni", max_age_seconds=0)))

    flagged, windows, pvals = 0, 0, []
    for r in range(args.refs):
        rng = np.random.default_rng(1000 + r)
        with service(draw(rng, args.ref_rows), f"ref{r}") as url:
            c = _Client(url)
            wait_until(lambda: c.http.get("/readyz").status_code == 200, timeout=120, what="ready")  # noqa: B023 - called now
            results = c.send(draw(rng, size * args.windows_per_ref))
        assert len(results) == args.windows_per_ref, len(results)
        flagged += sum(x["detected"] for x in results)
        windows += len(results)
        pvals += [x["pValue"] for x in results]
    share = flagged / windows
    print(f"  stationary: {flagged} of {windows} windows flagged = {share:.1%} "
          f"(configured p-value {args.p_value:.0%}, Bonferroni over {len(FEATURES)} features; "
          f"{args.refs} reference draws of {args.ref_rows} rows); median adjusted p {np.median(pvals):.2f}")

    rng = np.random.default_rng(7)
    in_mixed = mixed_trials = by_full = trials = 0
    with service(draw(rng, args.ref_rows), "shift") as url:
        c = _Client(url)
        wait_until(lambda: c.http.get("/readyz").status_code == 200, timeout=120, what="ready")
        for t in range(args.trials):
            feature = t % len(FEATURES)
            name = FEATURES[feature]
            # each trial starts on a window boundary (the service's windows are aligned to instances sent):
            # `offset` stationary instances, then the shift until the end of the next full window
            offset = int(rng.integers(0, size))
            assert not c.send(draw(rng, offset))
            shifted = draw(rng, 2 * size - offset)
            shifted[:, feature] += 0.5 * std[feature]
            results = c.send(shifted)
            assert len(results) == 2, len(results)
            hit = [r["detected"] and name in r["featuresDrifted"] for r in results]
            if offset > 0:  # results[0] mixed (shift starts inside it), results[1] the first full shifted window
                mixed_trials += 1
                in_mixed += hit[0]
                by_full += hit[0] or hit[1]
            else:  # results[0] is already the first full shifted window
                by_full += hit[0]
            trials += 1
            assert len(c.send(draw(rng, size))) == 1  # one stationary window before the next trial
    print(f"  0.5 std mean shift in one feature ({trials} trials, each feature in turn, shift starting at a "
          f"random point of a window):")
    print(f"      detected in the window where it starts: {in_mixed / trials:.0%};  "
          f"detected by the end of the first full window after it starts: {by_full / trials:.0%}")
    return {"stationary_flagged": share, "windows": windows, "shift_detected_first_full": by_full / trials,
            "shift_detected_mixed": in_mixed / max(mixed_trials, 1), "trials": trials}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--service-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--p-value", type=float, default=0.05)
    ap.add_argument("--refs", type=int, default=8, help="reference draws for the stationary test")
    ap.add_argument("--windows-per-ref", type=int, default=50)
    ap.add_argument("--ref-rows", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES),
                    help="ingest cases: ks (every feature), mix (ks, psi, hellinger, wasserstein)")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
          "(shared machine: numbers are noisy)")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-drift-") as tmp:
        work = Path(tmp)
        if not args.skip_ingest:
            print("(a) ingest rate (targets: 5,000 events/s at 1 row/event, 100,000 instances/s at 100 rows/event)")
            for case in args.cases:
                bench_ingest(args, work, case)
        if not args.skip_quality:
            print("(b) detection quality (window 1000 tumbling, KS per feature)")
            bench_quality(args, work)


if __name__ == "__main__":
    main()
