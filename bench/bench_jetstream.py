"""Drift ingest over JetStream vs HTTP, in one run (DESIGN §13, issue 14).

The drift service runs as ``vigil serve drift`` pinned to CPU 0 (``taskset -c 0``), fitted from
5,000 reference rows of 4 features, window 1000 tumbling, checkpointing on (every event in the
append log, with its stream sequence under JetStream, before it is acknowledged).

- **HTTP**: a client pinned to CPU 1 (aiohttp, `--connections` concurrent) POSTs the events as
  binary-mode CloudEvents to ``POST /``, as the logger's HTTP sinks do.
- **JetStream**: the same events are first published to the monitor's stream through the
  logger's own publisher (`JetStreamSink`, also on CPU 1) with drift stopped; then drift starts
  and drains the stream as a durable pull consumer (batches of 100). Timed from its first
  instance to its last.

Printed per transport and body size (1 row and 100 rows per event): events/s, instances/s, the
service's CPU use over the run and events per CPU-second of the service, and a check that drift
counted every instance sent. A real nats-server (the wheel's) runs on loopback.

    python bench/bench_jetstream.py                      # 20,000 one-row events, 2,000 of 100 rows
    python bench/bench_jetstream.py --events 50000 --connections 64
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
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_drift import FEATURES, _cpu_seconds, _instances_total, draw  # noqa: E402

MONITOR, NAMESPACE = "bench", "default"


def _pin(cpu: str) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})


def _events(rng: np.random.Generator, n: int, rows: int) -> list[bytes]:
    from vigil.events import v2_request

    return [json.dumps(v2_request(draw(rng, rows))).encode() for _ in range(n)]


def _attributes(i: int) -> dict:
    from vigil.events import REQUEST

    return {"id": str(uuid.uuid4()), "source": "/vigil/default/bench/logger", "type": REQUEST, "specversion": "1.0",
            "time": time.time(), "datacontenttype": "application/json", "inferenceid": f"inf-{i}-{uuid.uuid4()}",
            "modelname": "m", "monitorname": MONITOR, "namespace": NAMESPACE, "endpoint": "/v2/models/m/infer"}


class Drift:
    """``vigil serve drift`` pinned to a CPU, with the given transport."""

    def __init__(self, work: Path, cpu: str, transport: dict | None):
        from tests.servers import free_port, serve_command

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "VIGIL_DRIFT_REFERENCE": str(work / "reference.npy"),
               "VIGIL_DRIFT_FEATURE_NAMES": json.dumps(FEATURES), "VIGIL_DRIFT_WINDOW_SIZE": "1000",
               "VIGIL_DRIFT_STATE_DIR": str(work / f"state-{uuid.uuid4().hex[:6]}"), "VIGIL_DRIFT_MONITOR": MONITOR,
               "VIGIL_DRIFT_NAMESPACE": NAMESPACE, "VIGIL_DRIFT_MAX_AGE_SECONDS": "0", "PYTHONUNBUFFERED": "1"}
        if transport:
            env["VIGIL_DRIFT_TRANSPORT"] = json.dumps(transport)
        cmd = serve_command("drift", self.port)
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        self.log = open(work / "drift.log", "a")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> None:
        import httpx

        from tests.servers import wait_until

        def ok():
            if self.proc.poll() is not None:
                sys.exit("drift exited: " + Path(self.log.name).read_text()[-3000:])
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ok, timeout=120, what="drift service")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def _post_all(url: str, bodies: list[bytes], connections: int) -> float:
    import aiohttp
    from cloudevents.core.bindings.http import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    fmt = JSONFormat()
    queue: asyncio.Queue = asyncio.Queue()
    for i, body in enumerate(bodies):
        queue.put_nowait((i, body))
    bad = 0

    async def worker(session):
        nonlocal bad
        while not queue.empty():
            i, body = queue.get_nowait()
            attrs = _attributes(i)
            attrs.pop("time")
            msg = to_binary(CloudEvent(attrs, body), fmt)
            async with session.post(url + "/", data=msg.body, headers=msg.headers) as r:
                await r.read()
                bad += r.status >= 300

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    if bad:
        print(f"      {bad} non-2xx answers")
    return time.perf_counter() - t0


async def _publish_all(nats_url: str, bodies: list[bytes]) -> None:
    from vigil.logger.metrics import LoggerMetrics
    from vigil.logger.sinks import Event, RetryPolicy
    from vigil.transport import TransportConfig
    from vigil.transport.jetstream import ConsumerSpec, JetStreamSink

    sink = JetStreamSink(TransportConfig(type="jetstream", url=nats_url), [ConsumerSpec("drift", ("request",))],
                         NAMESPACE, MONITOR, RetryPolicy(), LoggerMetrics(MONITOR, NAMESPACE, ["jetstream"]),
                         queue_size=len(bodies) + 1, workers=16, queue_bytes=2**31)
    sink.start()
    for i, body in enumerate(bodies):
        sink.offer(Event("request", _attributes(i), body))
    while sink.sent + sum(sink.dropped.values()) < len(bodies):
        await asyncio.sleep(0.05)
    await sink.stop(5)
    if sink.dropped:
        sys.exit(f"publisher dropped events: {dict(sink.dropped)}")


def run(args, work: Path) -> None:
    from tests.natsserver import nats_server

    rng = np.random.default_rng(0)
    np.save(work / "reference.npy", draw(rng, 5000))
    results: dict[tuple[str, int], float] = {}
    print(f"drift on CPU {args.service_cpu}, client/publisher on CPU {args.client_cpu}; "
          f"HTTP with {args.connections} connections; JetStream fetches 100 at a time")
    for rows, n in ((1, args.events), (100, max(100, args.events // 10))):
        bodies = _events(rng, n, rows)
        # -- HTTP
        drift = Drift(work, args.service_cpu, None)
        try:
            drift.ready()
            cpu0 = _cpu_seconds(drift.proc.pid)
            seconds = asyncio.run(_post_all(drift.url, bodies, args.connections))
            cpu = _cpu_seconds(drift.proc.pid) - cpu0
            counted = _instances_total(drift.url)
        finally:
            drift.stop()
        results[("http", rows)] = n / seconds
        _line("HTTP", rows, n, seconds, cpu, counted)
        # -- JetStream
        with nats_server(work / f"nats-{rows}") as server:
            asyncio.run(_publish_all(server.url, bodies))
            drift = Drift(work, args.service_cpu, {"type": "jetstream", "url": server.url})
            try:
                drift.ready()
                import httpx

                while _instances_total(drift.url) == 0:
                    time.sleep(0.005)
                t0, cpu0 = time.perf_counter(), _cpu_seconds(drift.proc.pid)
                deadline = time.monotonic() + 600
                while (counted := _instances_total(drift.url)) < n * rows and time.monotonic() < deadline:
                    time.sleep(0.02)
                seconds, cpu = time.perf_counter() - t0, _cpu_seconds(drift.proc.pid) - cpu0
                status = httpx.get(drift.url + "/status").json()["transport"]["messages"]
            finally:
                drift.stop()
        results[("jetstream", rows)] = n / seconds
        _line("JetStream", rows, n, seconds, cpu, counted, extra=f"  settled {status}")
        print(f"  => JetStream / HTTP at {rows} row(s)/event: "
              f"{results[('jetstream', rows)] / results[('http', rows)]:.2f}x")


def _line(name: str, rows: int, n: int, seconds: float, cpu: float, counted: float, extra: str = "") -> None:
    eps = n / seconds
    print(f"  {name:<9} {rows:>3} row(s)/event: {eps:>9,.0f} events/s  {eps * rows:>11,.0f} instances/s  "
          f"service CPU {cpu / seconds:5.0%} ({n / max(cpu, 1e-9):,.0f} events per CPU-s)  "
          f"counted {counted:,.0f}/{n * rows:,} ({'ok' if counted == n * rows else 'MISMATCH'}){extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="one-row events (100-row events: a tenth)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--service-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    args = ap.parse_args()
    _pin(args.client_cpu)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-js-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
