"""Image drift benchmark (issue 11): UAE drift ingest rate (images/s) and its detection quality.

(a) **Ingest.** `vigil train` builds the UAE drift artifact (encodingDim 32, seed 0) from
1,000 CIFAR-shaped patches of scikit-learn's sample photos (`tests.imagedata`); the drift
service runs as ``vigil serve drift`` in a subprocess pinned to CPU 0 (``taskset -c 0``)
with ``shape: [32, 32, 3]``, a tumbling window of 500 and checkpointing on. A client on
the other CPU keeps `--concurrency` requests in flight, each a V2 request event with
`--batch` images ([n, 32, 32, 3] FP64 tensors). Printed: images/s, events/s, the service's
CPU seconds per 1,000 images, its RSS at ready and at the end, and a cross-check that the
service counted every image acknowledged. For scale: the UAE's own encode rate in this
process (no HTTP, no JSON), images/s.

(b) **Quality** (the service's own code: the saved encoder + the drift suite): share of
stationary windows flagged over `--windows` disjoint clean windows of 500 held-out
patches (expected ≤ the p-value), and the adjusted p-value of one window of each of the
four corruptions of alibi-detect's CIFAR-10 example.

    python bench/bench_images_drift.py                   # ~3-5 min on a busy 2-core machine
    python bench/bench_images_drift.py --duration 10 --batch 16 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WINDOW = 500


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(args, artifact: str, images: np.ndarray, work: Path) -> None:
    import httpx

    from tests.servers import metric_value, serve_component
    from vigil.events import v2_request

    env = {"VIGIL_DRIFT_ARTIFACT": artifact, "VIGIL_DRIFT_PREPROCESS": "uae", "VIGIL_DRIFT_SHAPE": "[32,32,3]",
           "VIGIL_DRIFT_WINDOW_SIZE": str(WINDOW), "VIGIL_DRIFT_MAX_AGE_SECONDS": "0", "VIGIL_DRIFT_P_VALUE": "0.01",
           "VIGIL_DRIFT_STATE_DIR": str(work / "state"), "VIGIL_DRIFT_MONITOR": "bench"}
    prefix = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    if prefix:
        os.sched_setaffinity(0, {1})
    bodies = [json.dumps(v2_request(images[i:i + args.batch])).encode()
              for i in range(0, len(images) - args.batch + 1, args.batch)]
    with serve_component("drift", env, prefix=prefix, timeout=300) as url:
        ready_rss = rss_mib(url.pid)
        cpu0 = cpu_seconds(url.pid)
        acked = [0]
        lock = threading.Lock()
        stop = time.monotonic() + args.duration

        def client(k: int) -> None:
            with httpx.Client(timeout=120) as c:
                i = k
                while time.monotonic() < stop:
                    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/bench",
                               "ce-type": "dev.vigil.inference.request", "content-type": "application/json"}
                    r = c.post(url + "/", content=bodies[i % len(bodies)], headers=headers)
                    if r.status_code in (200, 202):
                        with lock:
                            acked[0] += args.batch
                    i += args.concurrency

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        cpu = cpu_seconds(url.pid) - cpu0
        counted = metric_value(httpx.get(url + "/metrics").text, "vigil_drift_instances_total") or 0
        end_rss = rss_mib(url.pid)
    print(f"ingest: {acked[0] / wall:,.0f} images/s ({acked[0] / args.batch / wall:,.1f} events/s of {args.batch} "
          f"images, concurrency {args.concurrency}, {wall:.1f} s); service CPU {cpu / max(acked[0], 1) * 1000:.2f} s "
          f"per 1,000 images ({cpu / wall:.0%} of a core)")
    print(f"ingest: RSS at ready {ready_rss:.0f} MiB, at the end {end_rss:.0f} MiB; images acknowledged "
          f"{acked[0]}, counted by the service {counted:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=32, help="images per request event")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--windows", type=int, default=16, help="clean windows for the false-alarm share")
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()

    from tests import imagedata
    from vigil_detectors.drift.preprocess import load_preprocessor
    from vigil_detectors.drift.statistics import fit_statistic
    from vigil_detectors.train import train_array

    x, _ = imagedata.patches(1000 + args.windows * WINDOW, seed=0)
    ref, held = x[:1000], x[1000:]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.monotonic()
        artifact = str(train_array("drift", ref, {"preprocess": {"type": "uae", "encodingDim": 32, "seed": 0},
                                                  "pValue": 0.01}, work / "drift", progress=lambda m: None))
        print(f"train: UAE artifact from {len(ref)} images in {time.monotonic() - started:.1f} s "
              f"(TensorFlow import included)")
        pre = load_preprocessor(artifact)
        suite = fit_statistic(pre.reference, p_value=0.01)
        pre(held[:64])  # warm up
        started = time.perf_counter()
        encoded = pre(held)
        seconds = time.perf_counter() - started
        print(f"encode: {len(held) / seconds:,.0f} images/s (UAE alone, in process, batch 256)")
        flagged = sum(suite.check(encoded[i * WINDOW:(i + 1) * WINDOW]).detected for i in range(args.windows))
        print(f"quality: {flagged}/{args.windows} clean windows of {WINDOW} flagged (p-value 0.01, Bonferroni "
              "over 32 dimensions)")
        for name, corrupt in imagedata.CORRUPTIONS.items():
            result = suite.check(pre(corrupt(held[:WINDOW])))
            print(f"quality: {name:<15} detected={result.detected}  adjusted p={result.p_value:.3g}  "
                  f"dimensions drifted {len(result.drifted)}/32")
        if not args.skip_ingest:
            ingest(args, artifact, held, work)


if __name__ == "__main__":
    main()
