"""Benchmark: the outlier service's throughput, per core and per CPU-second, and its memory.

    python bench/bench_outlier.py [--artifact DIR] [--events 4000] [--memory-events 10000]
    python bench/bench_outlier.py --compare /work/main   # the same cases, this tree vs another checkout

What it does:
1. Uses the OutlierVAE artifact given, or trains a small one on iris with `vigil train`
   (the same code path as `vigil up`).
2. Starts the real service (``vigil serve outlier``, same artifact) pinned to one core with
   ``taskset -c 0``, and drives it from this process pinned to core 1 with a raw asyncio
   HTTP/1.1 keep-alive client (one connection per concurrent caller; binary-mode
   CloudEvents, V2 bodies, a fresh ce-id per send).
3. Cases (issue 13): one row per event at concurrency 1, 16 and 64, and 64 rows per event
   at concurrency 16, with batching on (maxBatchSize 64, maxBatchDelayMs 5, the spec
   defaults); one row per event with batching off (maxBatchSize 1) for the batching gain.
   For each: events/s and rows/s (wall clock), the service's CPU-seconds (utime + stime
   from /proc/PID/stat) and events / rows per CPU-second of the service — the figure to
   compare on a shared machine, where wall-clock rates are lower bounds — and the mean rows
   per VAE call (the service's ``vigil_outlier_batch_size`` histogram).
4. Memory: the service's VmRSS once ready, once its de-duplication window is full (100,000
   events: it remembers that many recent ids, ~14 MB, and no more), then after
   `--memory-events` events at concurrency 64, twice; growth per event over the last round.
5. Times one scoring call on the same core, for 1 and 64 rows: alibi-detect's
   ``OutlierVAE.predict`` with the Keras model called eagerly, with it compiled, the
   one-graph `VAEScorer.score` (TensorFlow) and `DenseScorer.score` (NumPy: what the service
   uses for a VAE `vigil train` wrote; the in-process ceiling).

With ``--compare TREE`` every case also runs with the service imported from TREE (another
checkout, e.g. main before a change), in ``--rounds`` interleaved rounds; medians are printed.

Importable (``bench/bench_peers.py``): `run_case(artifact, rows, concurrency)` starts the
service, measures one case and returns its figures; `start_service`, `measure`,
`build_requests` and `memory` are the parts.

Peer (Seldon Core v1.17.1 alibi-detect-server, issue 13): 214 events/s at 1 row/event,
C=64; 7.7k rows/s at 64 rows/event, C=16. Goals: ≥ 8,600 events/s and ≥ 38k rows/s.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import httpx
import numpy as np
from _common import cpu_seconds, read_reply, rss_mib, stop  # noqa: E402 - bench/ is on the path (the script's dir)

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def train_artifact(workdir: Path) -> Path:
    from sklearn.datasets import load_iris

    ref = workdir / "reference.npy"
    np.save(ref, load_iris().data)
    out = workdir / "outlier"
    print("training a small OutlierVAE on iris with `vigil train` …", flush=True)
    subprocess.run([sys.executable, "-m", "vigil", "train", "--component", "outlier", "--reference", str(ref),
                    "--output", str(out), "--options", json.dumps({"epochs": 10}),
                    "--feature-names", json.dumps(FEATURES)], check=True, stdout=subprocess.DEVNULL)
    return out


class Service:
    """``vigil serve outlier`` in a subprocess pinned to `cpu`; `tree` imports vigil from another checkout."""

    def __init__(self, artifact: Path, env: Optional[dict[str, str]] = None, cpu: str = "0",
                 tree: Optional[str] = None):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        full_env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                    "VIGIL_OUTLIER_ARTIFACT": str(artifact), "VIGIL_OUTLIER_FEATURE_NAMES": json.dumps(FEATURES),
                    **(env or {})}
        if tree:
            root = Path(tree).resolve()
            full_env["PYTHONPATH"] = os.pathsep.join(str(root / p) for p in ("", "operator", "detectors"))
        self.log = tempfile.NamedTemporaryFile(prefix="bench-outlier-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "vigil", "serve", "outlier", "--host", HOST, "--port", str(self.port)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=1)
                if r.status_code == 200:
                    return
                if r.json().get("status") == "failed":
                    raise RuntimeError(f"service failed to load: {r.json().get('error')}")
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("service not ready")

    def stop(self) -> None:
        stop(self.proc, 10)
        self.log.close()
        os.unlink(self.log.name)


def start_service(artifact: Path, env: Optional[dict[str, str]] = None, cpu: str = "0",
                  tree: Optional[str] = None, warm: bool = True) -> Service:
    """A ready service (and warmed up: every VAE batch shape traced, allocator settled)."""
    service = Service(artifact, env, cpu, tree)
    try:
        service.wait_ready()
        if warm:
            for rows in (1, 64):
                asyncio.run(drive(service.port, build_requests(service.port, 64, rows), 16, 800 // rows + 16))
    except BaseException:
        service.stop()
        raise
    return service


def build_requests(port: int, n: int = 512, rows: int = 1) -> list[tuple[bytes, bytes]]:
    """Pre-encoded HTTP requests: binary-mode CloudEvents, `rows` V2 rows each (mostly iris-like, some far
    off), as (head up to the ce-id value, rest): each send gets its own ce-id, since detectors drop a
    repeated one as a retry (DESIGN §11)."""
    rng = np.random.default_rng(0)
    table = rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.8, 0.8], size=(n * rows, 4))
    table[::20] += 10.0  # a few outliers
    out = []
    for i in range(n):
        chunk = table[i * rows:(i + 1) * rows]
        body = json.dumps({"inputs": [{"name": "input-0", "shape": [rows, 4], "datatype": "FP64",
                                       "data": [round(float(v), 4) for v in chunk.ravel()]}]}).encode()
        head = (f"POST / HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                f"ce-specversion: 1.0\r\nce-type: dev.vigil.inference.request\r\nce-source: /bench\r\n"
                f"ce-id: bench-").encode()
        out.append((head, f"-{i}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body))
    return out


_SENT = itertools.count()


async def _caller(port: int, requests: list[tuple[bytes, bytes]], count: int, offset: int, errors: list) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for i in range(count):
            head, rest = requests[(offset + i) % len(requests)]
            writer.write(head + str(next(_SENT)).encode() + rest)
            status = await read_reply(reader)
            if status != b"200":
                errors.append(status)
    finally:
        writer.close()


async def drive(port: int, requests: list[tuple[bytes, bytes]], concurrency: int, total: int) -> float:
    """events/s for `total` events sent by `concurrency` keep-alive callers."""
    per = max(1, total // concurrency)
    errors: list = []
    started = time.perf_counter()
    await asyncio.gather(*(_caller(port, requests, per, k * 97, errors) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} events failed, e.g. HTTP {errors[0]!r}")
    return per * concurrency / elapsed


def measure(service: Service, rows: int, concurrency: int, events: int) -> dict[str, float]:
    """One case against a running service: wall-clock and per-service-CPU-second rates."""
    requests = build_requests(service.port, 512 if rows == 1 else 64, rows)
    sent = max(1, events // concurrency) * concurrency
    before = _batches(service)
    cpu0, t0 = cpu_seconds(service.pid), time.perf_counter()
    asyncio.run(drive(service.port, requests, concurrency, sent))
    seconds, cpu = time.perf_counter() - t0, cpu_seconds(service.pid) - cpu0
    ev_s, ev_cpu = sent / seconds, sent / cpu if cpu > 0 else float("nan")
    return {"rows": rows, "concurrency": concurrency, "events": sent, "seconds": seconds, "cpu_seconds": cpu,
            "cpu_share": cpu / seconds, "events_per_s": ev_s, "rows_per_s": ev_s * rows,
            "events_per_cpu_s": ev_cpu, "rows_per_cpu_s": ev_cpu * rows,
            "mean_batch": _mean_batch_since(service, before)}


def run_case(artifact: Path, rows: int = 1, concurrency: int = 64, events: int = 4000,
             env: Optional[dict[str, str]] = None, cpu: str = "0", tree: Optional[str] = None) -> dict[str, float]:
    """Start the service, measure one case (`measure`'s figures plus ``rss_ready_mb``), stop it."""
    service = start_service(artifact, env, cpu, tree, warm=False)
    try:
        ready = rss_mib(service.pid)
        asyncio.run(drive(service.port, build_requests(service.port, 64, rows), 16, 800 // rows + 16))
        return {**measure(service, rows, concurrency, events), "rss_ready_mb": ready}
    finally:
        service.stop()


def memory(service: Service, events: int, rounds: int = 2) -> list[float]:
    """VmRSS (MB) at ready, once the de-duplication window is full (`DEFAULT_CAPACITY` events: it keeps
    that many recent ids, ~140 bytes each, and then stays that size), then after each round of `events`
    one-row events at concurrency 64."""
    from vigil_detectors.frame.dedup import DEFAULT_CAPACITY

    requests = build_requests(service.port)
    rss = [rss_mib(service.pid)]
    for count in (DEFAULT_CAPACITY, *[events] * rounds):
        asyncio.run(drive(service.port, requests, 64, count))
        rss.append(rss_mib(service.pid))
    return rss


def measure_predict(artifact: str) -> None:
    """(In a subprocess pinned like the service.) Milliseconds per scoring call: alibi-detect's `predict` with
    the Keras model called eagerly, with it compiled, and the service's one-graph `VAEScorer.score`."""
    import timeit

    from vigil_detectors.outlier.scorer import VAEScorer, configure_threads

    configure_threads(1)
    scorer = VAEScorer.load(artifact)
    compiled = scorer.od.vae
    rows = np.random.default_rng(0).normal(size=(64, scorer.n_features)).astype(np.float32)
    out = {}
    for how, call in (("alibi eager", None), ("alibi compiled", None), ("vigil score", scorer.score)):
        scorer.od.vae = scorer.model if how == "alibi eager" else compiled
        for n in (1, 64):
            x = rows[:n]
            fn = call or scorer.od.predict
            fn(x)
            runs = 100 if how == "alibi eager" else 400
            out[f"{how} {n}"] = min(timeit.repeat(lambda: fn(x), number=runs, repeat=3)) / runs * 1e3  # noqa: B023
    from vigil_detectors.outlier.dense import DenseScorer, Unavailable

    try:  # what the service scores a dense VAE with (no TensorFlow)
        dense = DenseScorer.load(artifact)
    except Unavailable:
        dense = None
    for n in (1, 64) if dense else ():
        x = rows[:n]
        dense.score(x)
        out[f"vigil numpy {n}"] = min(timeit.repeat(lambda: dense.score(x), number=400, repeat=3)) / 400 * 1e3  # noqa: B023
    print(json.dumps(out))


def predict_costs(artifact: Path, cpu: str) -> dict:
    cmd = [sys.executable, __file__, "--measure-predict", str(artifact)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


ON = {"VIGIL_OUTLIER_MAX_BATCH_SIZE": "64", "VIGIL_OUTLIER_MAX_BATCH_DELAY_MS": "5"}
OFF = {"VIGIL_OUTLIER_MAX_BATCH_SIZE": "1"}
#: issue 13's peer figures (Seldon Core v1.17.1 alibi-detect-server) and goals, by (rows per event, concurrency)
PEER = {(1, 64): ("events/s", 214.0, 8600.0), (64, 16): ("rows/s", 7700.0, 38000.0)}


def _line(label: str, r: dict) -> str:
    return (f"{label:<24} {r['rows']:>3} row{'s' if r['rows'] > 1 else ' '}/ev C={r['concurrency']:<3} "
            f"{r['events_per_s']:8.0f} ev/s {r['rows_per_s']:8.0f} rows/s | service CPU {r['cpu_share']:4.0%}: "
            f"{r['events_per_cpu_s']:7.0f} ev/CPU-s {r['rows_per_cpu_s']:8.0f} rows/CPU-s | "
            f"rows/VAE call {r['mean_batch']:5.1f}")


def run_tree(artifact: Path, label: str, tree: Optional[str], args) -> dict:
    """Every case for one tree: batching on (1 row at each level, 64 rows at C=16, memory), then off."""
    levels = [int(v) for v in args.levels.split(",")]
    out: dict = {"cases": {}}
    service = Service(artifact, ON, args.service_cpu, tree)
    try:
        service.wait_ready()
        out["rss_ready"] = rss_mib(service.pid)
        asyncio.run(drive(service.port, build_requests(service.port, 64, 1), 16, 800))  # warm-up
        asyncio.run(drive(service.port, build_requests(service.port, 64, 64), 16, 64))
        for rows, c in [(1, c) for c in levels] + [(64, 16)]:
            r = measure(service, rows, c, max(c, args.events // (4 if c == 1 else 1) // (8 if rows > 1 else 1)))
            out["cases"][("on", rows, c)] = r
            print(_line(f"{label} batching on", r), flush=True)
        if args.memory_events:
            out["rss"] = rss = memory(service, args.memory_events)
            print(f"{label} batching on: RSS {rss[0]:.1f} MB -> {rss[1]:.1f} MB with the de-duplication window full "
                  f"-> {rss[2]:.1f} MB after {args.memory_events} events -> {rss[3]:.1f} MB after "
                  f"{args.memory_events} more ({(rss[3] - rss[2]) * 1024 / args.memory_events:+.3f} KB/event)",
                  flush=True)
    finally:
        service.stop()
    if not args.skip_off:
        service = Service(artifact, OFF, args.service_cpu, tree)
        try:
            service.wait_ready()
            asyncio.run(drive(service.port, build_requests(service.port, 64, 1), 16, 800))
            for c in levels:
                r = measure(service, 1, c, max(c, args.events // (4 if c == 1 else 1)))
                out["cases"][("off", 1, c)] = r
                print(_line(f"{label} batching off", r), flush=True)
        finally:
            service.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", help="an OutlierVAE directory (default: train one on iris)")
    ap.add_argument("--events", type=int, default=4000,
                    help="events per 1-row measurement (concurrency 1 uses a quarter, 64 rows/event an eighth)")
    ap.add_argument("--memory-events", type=int, default=10000, help="events per memory round (0: skip memory)")
    ap.add_argument("--levels", default="1,16,64", help="concurrencies of the one-row cases")
    ap.add_argument("--service-cpu", default="0", help="core the service is pinned to (taskset -c)")
    ap.add_argument("--client-cpu", type=int, default=1, help="core the load client is pinned to")
    ap.add_argument("--compare", metavar="TREE", help="also run every case with the service imported from TREE "
                                                      "(another checkout), interleaved")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians are reported)")
    ap.add_argument("--skip-off", action="store_true", help="skip the batching-off cases")
    ap.add_argument("--skip-predict", action="store_true", help="skip timing OutlierVAE.predict in-process")
    ap.add_argument("--measure-predict", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_predict:
        measure_predict(args.measure_predict)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-outlier-"))
    try:
        artifact = Path(args.artifact) if args.artifact else train_artifact(work)
        try:
            os.sched_setaffinity(0, {args.client_cpu})
        except (AttributeError, OSError):
            print("(could not pin the load client to a core)")
        print(f"service pinned to cpu {args.service_cpu} (taskset), load client on cpu {args.client_cpu}; "
              f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus\n", flush=True)
        trees: list[tuple[str, Optional[str]]] = [("this tree", None)]
        if args.compare:
            trees.append((Path(args.compare).name or args.compare, args.compare))
        runs: dict[str, list[dict]] = {label: [] for label, _ in trees}
        for k in range(args.rounds):
            for label, tree in trees if k % 2 == 0 else trees[::-1]:
                runs[label].append(run_tree(artifact, label, tree, args))
            print(flush=True)

        if not args.skip_predict:
            costs = predict_costs(artifact, args.service_cpu)
            print("one scoring call (ms), same core: "
                  + ", ".join(f"{k} row{'s' if k.endswith('64') else ''} {v:.2f}" for k, v in costs.items()) + "\n")

        print(f"summary: medians of {args.rounds} round(s); wall-clock rates are lower bounds on a shared machine, "
              "per service CPU-second is the comparable figure")
        for label, rs in runs.items():
            for key in rs[0]["cases"]:
                med = {f: float(np.median([r["cases"][key][f] for r in rs])) for f in rs[0]["cases"][key]}
                med["rows"], med["concurrency"] = key[1], key[2]
                line = _line(f"{label} batching {key[0]}", med)
                if key[0] == "on" and (key[1], key[2]) in PEER:
                    unit, peer, goal = PEER[(key[1], key[2])]
                    value = med["events_per_s" if unit == "events/s" else "rows_per_s"]
                    per_cpu = med["events_per_cpu_s" if unit == "events/s" else "rows_per_cpu_s"]
                    line += (f" | peer {peer:.0f} {unit}: {value / peer:.1f}x wall, {per_cpu / peer:.1f}x per CPU-s "
                             f"(goal {goal:.0f})")
                print(line)
            ready = np.median([r["rss_ready"] for r in rs])
            if "rss" in rs[0]:
                grow = np.median([(r["rss"][3] - r["rss"][2]) * 1024 / args.memory_events for r in rs])
                print(f"{label} memory: RSS at ready {ready:.1f} MB, steady growth {grow:+.3f} KB/event "
                      f"(peer ~33 KB/event)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _batches(service: Service) -> tuple[float, float]:
    text = httpx.get(service.url + "/metrics").text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("vigil_outlier_batch_size_sum{"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("vigil_outlier_batch_size_count{"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def _mean_batch_since(service: Service, before: tuple[float, float]) -> float:
    total, count = _batches(service)
    return (total - before[0]) / (count - before[1]) if count > before[1] else 0.0


if __name__ == "__main__":
    sys.exit(main())
