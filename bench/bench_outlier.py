"""Benchmark: the outlier service's events/s (one row per event) with batching on and off, and its memory.

    python bench/bench_outlier.py [--artifact DIR] [--events 4000] [--memory-events 10000]

What it does:
1. Uses the OutlierVAE artifact given, or trains a small one on iris with `vigil train`
   (the same code path as `vigil up`).
2. For each mode — batching on (maxBatchSize 64, maxBatchDelayMs 5, the spec defaults) and
   batching off (maxBatchSize 1: one VAE call per event) — starts the real service
   (``vigil serve outlier``, same artifact) pinned to one core with ``taskset -c 0``, and
   drives it from this process pinned to core 1 with a raw asyncio HTTP/1.1 keep-alive
   client (one connection per concurrent caller; binary-mode CloudEvents, one V2 row each).
3. Measures events/s at concurrency 1, 16 and 64 — wall clock, and per CPU-second the
   service used (from /proc: what the rate is when the core is not shared with other
   work) — the mean rows per VAE call (from the service's ``vigil_outlier_batch_size``
   histogram), and the service's resident memory (VmRSS from /proc) before and after
   `--memory-events` events, twice (the first round includes allocator warm-up for the
   varying batch sizes, the second shows the steady state).
4. Times one alibi-detect ``OutlierVAE.predict`` call on the same core, eager (the Keras
   model called directly) and compiled (what the service does), for 1 and 64 rows: the
   cost that batching spreads over many events.

Prints a table; asserts nothing (targets are in the issue: ≥10x and ≥2,800 events/s at
concurrency 64 with batching, < 5 MB growth per 10,000 events).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


class Service:
    def __init__(self, artifact: Path, env: dict[str, str], cpu: str):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        full_env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                    "VIGIL_OUTLIER_ARTIFACT": str(artifact), "VIGIL_OUTLIER_FEATURE_NAMES": json.dumps(FEATURES),
                    **env}
        self.log = tempfile.NamedTemporaryFile(prefix="bench-outlier-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "vigil", "serve", "outlier", "--host", HOST, "--port", str(self.port)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
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
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def build_requests(port: int, n: int = 512) -> list[tuple[bytes, bytes]]:
    """Pre-encoded HTTP requests: binary-mode CloudEvents, one V2 row each (mostly iris-like, some far off),
    as (head up to the ce-id value, rest): each send gets its own ce-id, since detectors drop a
    repeated one as a retry (DESIGN §11)."""
    rng = np.random.default_rng(0)
    rows = rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.8, 0.8], size=(n, 4))
    rows[::20] += 10.0  # a few outliers
    out = []
    for i, row in enumerate(rows):
        body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                       "data": [round(float(v), 4) for v in row]}]}).encode()
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
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head[9:12] != b"200":
                errors.append(head[9:12])
    finally:
        writer.close()


async def drive(port: int, requests: list[tuple[bytes, bytes]], concurrency: int, total: int) -> float:
    """events/s for `total` events sent by `concurrency` keep-alive callers."""
    per = total // concurrency
    errors: list = []
    started = time.perf_counter()
    await asyncio.gather(*(_caller(port, requests, per, k * 97, errors) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} events failed, e.g. HTTP {errors[0]!r}")
    return per * concurrency / elapsed


def measure_predict(artifact: str) -> None:
    """(In a subprocess pinned like the service.) Milliseconds per alibi-detect `predict`, eager vs compiled."""
    import timeit

    from vigil_detectors.outlier.scorer import VAEScorer, configure_threads

    configure_threads(1)
    scorer = VAEScorer.load(artifact)
    compiled = scorer.od.vae
    rows = np.random.default_rng(0).normal(size=(64, scorer.n_features)).astype(np.float32)
    out = {}
    for how, vae in (("eager", scorer.model), ("compiled", compiled)):
        scorer.od.vae = vae
        for n in (1, 64):
            x = rows[:n]
            scorer.od.predict(x)
            runs = 100 if how == "eager" else 400
            out[f"{how} {n}"] = min(timeit.repeat(lambda: scorer.od.predict(x), number=runs, repeat=3)) / runs * 1e3  # noqa: B023
    print(json.dumps(out))


def predict_costs(artifact: Path, cpu: str) -> dict:
    cmd = [sys.executable, __file__, "--measure-predict", str(artifact)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", help="an OutlierVAE directory (default: train one on iris)")
    ap.add_argument("--events", type=int, default=4000, help="events per measurement (concurrency 1 uses a quarter)")
    ap.add_argument("--memory-events", type=int, default=10000)
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--service-cpu", default="0")
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--measure-predict", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_predict:
        measure_predict(args.measure_predict)
        return 0
    levels = [int(v) for v in args.levels.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-outlier-"))
    try:
        artifact = Path(args.artifact) if args.artifact else train_artifact(work)
        try:
            os.sched_setaffinity(0, {args.client_cpu})
        except (AttributeError, OSError):
            print("(could not pin the load client to a core)")
        print(f"service pinned to cpu {args.service_cpu} (taskset), load client on cpu {args.client_cpu}; "
              f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus\n", flush=True)
        modes = [("batching on", {"VIGIL_OUTLIER_MAX_BATCH_SIZE": "64", "VIGIL_OUTLIER_MAX_BATCH_DELAY_MS": "5"}),
                 ("batching off", {"VIGIL_OUTLIER_MAX_BATCH_SIZE": "1"})]
        results: dict[str, dict] = {}
        for mode, env in modes:
            service = Service(artifact, env, args.service_cpu)
            try:
                service.wait_ready()
                requests = build_requests(service.port)
                asyncio.run(drive(service.port, requests, 16, 800))  # warm-up
                res = {"rate": {}, "cpu_rate": {}, "batch": {}}
                pid = service.proc.pid
                for c in levels:
                    total = max(c, args.events // 4 if c == 1 else args.events)
                    before_batches = _batches(service)
                    cpu0 = cpu_seconds(pid)
                    rate = asyncio.run(drive(service.port, requests, c, total))
                    used = cpu_seconds(pid) - cpu0
                    res["rate"][c] = rate
                    res["cpu_rate"][c] = (total // c) * c / used if used > 0 else float("nan")
                    res["batch"][c] = _mean_batch_since(service, before_batches)
                    print(f"{mode:<13} concurrency {c:>3}: {rate:8.0f} events/s   "
                          f"{res['cpu_rate'][c]:8.0f} events per service CPU-second   "
                          f"mean rows per VAE call {res['batch'][c]:5.1f}", flush=True)
                rss = [rss_mb(pid)]
                for _ in range(2):
                    asyncio.run(drive(service.port, requests, 64, args.memory_events))
                    rss.append(rss_mb(pid))
                res["rss"] = rss
                print(f"{mode:<13} RSS {rss[0]:.1f} MB -> {rss[1]:.1f} MB after {args.memory_events} events "
                      f"({rss[1] - rss[0]:+.2f} MB) -> {rss[2]:.1f} MB after {args.memory_events} more "
                      f"({rss[2] - rss[1]:+.2f} MB)\n", flush=True)
                results[mode] = res
            finally:
                service.stop()

        costs = predict_costs(artifact, args.service_cpu)
        print("one alibi-detect OutlierVAE.predict call (ms), same core: "
              + ", ".join(f"{k} row{'s' if k.endswith('64') else ''} {v:.2f}" for k, v in costs.items()) + "\n")

        on, off = results["batching on"], results["batching off"]
        print("summary (one row per event; events/s wall clock | events per service CPU-second)")
        print(f"{'concurrency':>12} {'batching on':>20} {'batching off':>20} {'ratio':>14}")
        for c in levels:
            print(f"{c:>12} {on['rate'][c]:>9.0f} | {on['cpu_rate'][c]:>7.0f} {off['rate'][c]:>9.0f} | "
                  f"{off['cpu_rate'][c]:>7.0f} {on['rate'][c] / off['rate'][c]:>5.1f}x | "
                  f"{on['cpu_rate'][c] / off['cpu_rate'][c]:>4.1f}x")
        for mode, res in results.items():
            r0, r1, r2 = res["rss"]
            print(f"memory, {mode}: {r0:.1f} MB, {r1:.1f} MB after {args.memory_events} events ({r1 - r0:+.2f} MB), "
                  f"{r2:.1f} MB after {args.memory_events} more ({r2 - r1:+.2f} MB)")
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
