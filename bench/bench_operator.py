"""How fast the operator converges monitors, and what it costs the API server when idle.

Runs the real operator (kopf) against the API emulator of tests/kubeemu.py (in-memory, on
loopback), creates N copies of examples/iris-monitor.yaml, and prints:

- seconds until every monitor has all its children and a phase;
- API requests the operator made for that, per monitor;
- API requests per second while nothing changes (the status timer converging and
  reading each monitor), per monitor, at the given status interval.

Usage: python bench/bench_operator.py [--monitors 20] [--interval 2] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.operator_harness import cluster, eventually, load_example, running_operator  # noqa: E402


class _Env:
    """monkeypatch's two methods the harness uses, for a script."""

    def setenv(self, key, value):
        import os

        os.environ[key] = value

    def setattr(self, obj, name, value):
        setattr(obj, name, value)


def operator_requests(emu) -> int:
    return sum(1 for r in emu if (r.headers.get("Authorization") or "") == "Bearer operator")


async def main(n: int, interval: float, idle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with cluster(Path(tmp)) as c, running_operator(c, _Env(), status_interval=interval,
                                                             status_timeout=0.2):
            base = operator_requests(c.emu)
            t0 = time.perf_counter()
            for i in range(n):
                doc = copy.deepcopy(load_example("iris-monitor.yaml"))
                doc["metadata"]["name"] = f"iris-{i}"
                await c.create_monitor(doc)
            await eventually(lambda: len(c.objects("Deployment")) == 4 * n and
                             all(c.status(f"iris-{i}").get("phase") == "Training" for i in range(n)),
                             timeout=600, interval=0.1, what="all monitors converged")
            converge = time.perf_counter() - t0
            created = operator_requests(c.emu) - base
            await asyncio.sleep(interval)  # let the first timer round pass
            before, t1 = operator_requests(c.emu), time.perf_counter()
            await asyncio.sleep(idle)
            idle_rate = (operator_requests(c.emu) - before) / (time.perf_counter() - t1)
    print(f"monitors: {n}, status interval: {interval}s")
    print(f"converged all in {converge:.2f} s ({converge / n * 1000:.0f} ms per monitor)")
    print(f"API requests to converge: {created} ({created / n:.1f} per monitor)")
    print(f"idle API requests: {idle_rate:.1f}/s ({idle_rate / n * interval:.1f} per monitor per status tick)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--monitors", type=int, default=20)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--idle", type=float, default=10.0)
    a = p.parse_args()
    asyncio.run(main(a.monitors, a.interval, a.idle))
