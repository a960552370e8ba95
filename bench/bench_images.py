"""Benchmark: the outlier service on images — images/s of a convolutional OutlierVAE, batched and not.

    python bench/bench_images.py [--artifact DIR] [--events 1024]

What it does:
1. Uses the image OutlierVAE artifact given, or trains one with `vigil train --shape [32,32,3]` on
   1,000 32×32×3 patches of scikit-learn's sample photos (`vigil.imagedata`; latentDim 16, 5 epochs).
2. Starts the real service (``vigil serve outlier``, ``VIGIL_OUTLIER_SHAPE=[32,32,3]``) pinned to one
   core with ``taskset -c 0`` — batching on (maxBatchSize 64, the spec default) and off
   (maxBatchSize 1) — and drives it from this process on core 1 with the raw keep-alive client of
   `bench_outlier.py`: binary-mode CloudEvents, one V2 image ``[1, 32, 32, 3]`` per event, the
   reply carrying per-pixel scores (the default for images).
3. Measures images/s at concurrency 1, 16 and 64 (wall clock and per CPU-second of the service, from
   /proc utime+stime) and the mean images per VAE call, and times alibi-detect's ``OutlierVAE.predict``
   on one image with the Keras model called eagerly (the peer's way: Seldon's alibi-detect-server
   calls ``od.predict`` once per request) on the same core — all of it once per round, in
   `--rounds` interleaved rounds (default 3), because this shared machine's speed drifts by ±30%
   over minutes.
4. Prints the medians, each service rate against the eager once-per-image rate of the same round
   (median of the per-round ratios), on the wall clock and per CPU-second, and the resident memory
   at ready and after the runs.

Pixel values are sent as decimals of 4 places (float64 ``np.round``: what a client sending
``np.round(img, 4).tolist()`` of float64 images writes). The service's image path is described in
`vigil_detectors.outlier.scorer` (compiled scoring, each image encoded once).

Asserts nothing (the issue's target: ≥ 10× the eager once-per-event rate at concurrency 64).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_outlier import HOST, _caller, cpu_seconds, free_port, rss_mib  # noqa: E402

SHAPE = [32, 32, 3]


def train_artifact(workdir: Path) -> Path:
    from vigil import imagedata

    ref = workdir / "reference.npy"
    np.save(ref, imagedata.patches(1000, seed=0)[0])
    out = workdir / "outlier"
    print("training a convolutional OutlierVAE on 1,000 patches with `vigil train` …", flush=True)
    subprocess.run([sys.executable, "-m", "vigil", "train", "--component", "outlier", "--reference", str(ref),
                    "--output", str(out), "--options", json.dumps({"epochs": 5, "latentDim": 16}),
                    "--shape", json.dumps(SHAPE)], check=True, stdout=subprocess.DEVNULL)
    return out


class Service:
    def __init__(self, artifact: Path, max_batch: int, cpu: str):
        import httpx

        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
               "VIGIL_OUTLIER_ARTIFACT": str(artifact), "VIGIL_OUTLIER_SHAPE": json.dumps(SHAPE),
               "VIGIL_OUTLIER_MAX_BATCH_SIZE": str(max_batch)}
        self.log = tempfile.NamedTemporaryFile(prefix="bench-images-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "vigil", "serve", "outlier", "--host", HOST, "--port", str(self.port)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("service not ready")

    def batches(self) -> tuple[float, float]:
        import httpx

        text = httpx.get(self.url + "/metrics").text
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("vigil_outlier_batch_size_sum"):
                total = float(line.split()[-1])
            elif line.startswith("vigil_outlier_batch_size_count"):
                count = float(line.split()[-1])
        return total, count

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def build_requests(port: int, n: int) -> list[tuple[bytes, bytes]]:
    """`n` pre-encoded HTTP requests as `bench_outlier._caller` sends them — (head up to the ce-id
    value, rest), the caller adding a fresh ce-id per send (the frame drops a repeated one as a
    duplicate): one V2 image per binary-mode CloudEvent (clean patches, a few noisy)."""
    from vigil import imagedata

    x, _ = imagedata.patches(n, seed=5)
    x[::16] = np.clip(x[::16] + np.random.default_rng(1).normal(0, 1.0, x[::16].shape), 0, 1)
    out = []
    for i, img in enumerate(x):
        body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, *SHAPE], "datatype": "FP32",
                                       "data": np.round(img.astype(np.float64), 4).ravel().tolist()}]}).encode()
        head = (f"POST / HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                f"ce-specversion: 1.0\r\nce-type: dev.vigil.inference.request\r\nce-source: /bench\r\n"
                f"ce-id: img-").encode()
        out.append((head, f"-{i}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body))
    return out


async def drive(port: int, requests: list[tuple[bytes, bytes]], concurrency: int) -> float:
    """images/s sending every request once, from `concurrency` keep-alive callers."""
    errors: list = []
    per = len(requests) // concurrency
    started = time.perf_counter()
    await asyncio.gather(*(_caller(port, requests[k * per:(k + 1) * per], per, 0, errors) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} events failed, e.g. HTTP {errors[0]!r}")
    return per * concurrency / elapsed


def measure_eager(artifact: str) -> None:
    """(In a subprocess pinned like the service.) ms per alibi-detect predict of ONE image, eager Keras VAE:
    wall clock (best of 3 rounds of 20) and CPU time of this process (all 60 calls)."""
    import timeit

    from vigil_detectors.outlier.scorer import VAEScorer, configure_threads

    configure_threads(1)
    scorer = VAEScorer.load(artifact)
    x = np.random.default_rng(0).random((1, *SHAPE)).astype(np.float32)
    scorer.od.vae = scorer.model  # the Keras model itself, called eagerly once per image
    scorer.od.predict(x)
    cpu0 = time.process_time()
    wall = min(timeit.repeat(lambda: scorer.od.predict(x), number=20, repeat=3)) / 20 * 1e3
    print(json.dumps({"eager_ms": wall, "eager_cpu_ms": (time.process_time() - cpu0) / 60 * 1e3}))


def eager_round(artifact: Path, cpu: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--measure-eager", str(artifact)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    done = subprocess.run(cmd, env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, check=True)
    eager = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": 1000.0 / eager["eager_ms"], "cpu": 1000.0 / eager["eager_cpu_ms"]}


def service_round(service: Service, requests: list[tuple[bytes, bytes]], concurrency: int,
                  total: int) -> dict[str, float]:
    before, cpu0 = service.batches(), cpu_seconds(service.proc.pid)
    rate = asyncio.run(drive(service.port, requests[:total], concurrency))
    used = cpu_seconds(service.proc.pid) - cpu0
    after = service.batches()
    return {"wall": rate, "cpu": (total // concurrency) * concurrency / max(used, 1e-9),
            "batch": (after[0] - before[0]) / max(after[1] - before[1], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", help="an image OutlierVAE directory (default: train one)")
    ap.add_argument("--events", type=int, default=1024, help="events per measurement (concurrency 1: a quarter)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--service-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--measure-eager", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_eager:
        measure_eager(args.measure_eager)
        return 0
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {int(args.client_cpu)})
    cases = [("batching on", 64, 1), ("batching on", 64, 16), ("batching on", 64, 64), ("batching off", 1, 64)]
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.artifact) if args.artifact else train_artifact(Path(tmp))
        services = {mode: Service(artifact, max_batch, args.service_cpu)
                    for mode, max_batch in (("batching on", 64), ("batching off", 1))}
        try:
            requests = {mode: build_requests(s.port, args.events) for mode, s in services.items()}
            ready = {mode: rss_mib(s.proc.pid) for mode, s in services.items()}
            for mode, s in services.items():
                asyncio.run(drive(s.port, requests[mode][:64], 16))  # warm-up
            rounds: list[dict] = []
            for r in range(args.rounds):  # eager and service measured back to back in every round
                got = {"eager": eager_round(artifact, args.service_cpu)}
                for mode, _, c in cases:
                    total = args.events // 4 if c == 1 else args.events
                    got[(mode, c)] = service_round(services[mode], requests[mode], c, total)
                rounds.append(got)
                print(f"round {r + 1}: eager {got['eager']['wall']:.1f} images/s; "
                      + "; ".join(f"{mode} C={c} {got[(mode, c)]['wall']:.1f}" for mode, _, c in cases), flush=True)
            after = {mode: rss_mib(s.proc.pid) for mode, s in services.items()}
        finally:
            for s in services.values():
                s.stop()

    def med(values) -> float:
        return float(np.median(list(values)))

    eager_wall, eager_cpu = med(g["eager"]["wall"] for g in rounds), med(g["eager"]["cpu"] for g in rounds)
    print(f"\neager alibi-detect predict, one image per call (model call only, no HTTP), median of {args.rounds}: "
          f"{eager_wall:.1f} images/s = {1000 / eager_wall:.1f} ms; {eager_cpu:.1f} images per CPU-second")
    for mode in services:
        print(f"{mode:<13} RSS at ready {ready[mode]:.0f} MB, after the runs {after[mode]:.0f} MB")
    print(f"\nmedians of {args.rounds} interleaved rounds; 'x eager' is the median of each round's ratio to the eager "
          "rate measured in the same round\n(wall clock: same core, same minutes; per CPU-second: robust to other "
          "load on the core)")
    print(f"{'':<13} {'concurrency':>11} {'images/s':>9} {'x eager':>8} {'img/CPU-s':>10} {'x eager':>8} "
          f"{'images/call':>12}")
    for mode, _, c in cases:
        runs = [g[(mode, c)] for g in rounds]
        x_wall = med(g[(mode, c)]["wall"] / g["eager"]["wall"] for g in rounds)
        x_cpu = med(g[(mode, c)]["cpu"] / g["eager"]["cpu"] for g in rounds)
        print(f"{mode:<13} {c:>11} {med(r['wall'] for r in runs):9.1f} {x_wall:7.1f}x "
              f"{med(r['cpu'] for r in runs):10.1f} {x_cpu:7.1f}x {med(r['batch'] for r in runs):12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
