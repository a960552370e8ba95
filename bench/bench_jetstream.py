"""Outlier and drift ingest over JetStream vs HTTP, in one run (DESIGN §13, issue 14).

**Outlier** (1 row per event; the target: JetStream >= 3x HTTP per core). The outlier service
(``vigil serve outlier``, an OutlierVAE trained on iris by `vigil train`, maxBatchSize 64 and
maxBatchDelayMs 5: the spec defaults) runs pinned to CPU 0.

- **HTTP**: a raw keep-alive HTTP/1.1 client on CPU 1, 64 concurrent callers, POSTing the logger's
  events (`vigil.logger.sinks.Event`, encoded as its HTTP sink encodes them, ``ce-time`` included)
  one per call, after a warm-up with bench_outlier's requests.
- **JetStream**, 1 and 2 replicas (all on CPU 0, so the rate is per core): the replicas start,
  bind the durable consumer ``outlier`` and are then stopped (SIGSTOP); the same events are published
  through the logger's own publisher (`JetStreamSink`, CPU 1); the replicas are continued
  (SIGCONT) together and drain the stream, each fetch filling one scoring batch. Timed from the
  continue to the last event scored (the replicas' ``seen`` summing to what was sent).

nats-server runs on CPU 1 too (with the client: it is the broker's cost, not the service's).
Printed: events/s (wall clock), the services' CPU use and events per service CPU-second (from
/proc/PID/stat: the load-robust number on a shared machine), and the JetStream/HTTP ratios of both.

- **nats-py floor**: the client library's own cost per event, with nothing of Vigil's in it. The same
  events are published to a fresh stream, then a process pinned to CPU 0 binds the ``outlier``
  consumer and does only what any JetStream detector must: ``fetch(64)``, read each message's
  headers and stream sequence, publish a reply of the detector's shape (its ``ce-`` headers) and
  acknowledge it. Its events per CPU-second set the best ratio to HTTP that a detector built on
  nats-py could reach here, against the target's 3x.

**Drift** (1 and 100 rows per event):

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

    python bench/bench_jetstream.py                      # both; drift: 20,000 one-row events, 2,000 of 100 rows
    python bench/bench_jetstream.py --only outlier --outlier-events 20000
    python bench/bench_jetstream.py --only drift --events 50000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import cpu_seconds as _cpu_seconds  # noqa: E402 - the benches' one /proc reader
from bench._common import pinned, read_reply  # noqa: E402
from bench.bench_drift import FEATURES, _instances_total, draw  # noqa: E402

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


async def _publish_all(nats_url: str, bodies: list[bytes], consumer: tuple = ("drift", ("request",))) -> None:
    from vigil.logger.metrics import LoggerMetrics
    from vigil.logger.sinks import Event, RetryPolicy
    from vigil.transport import TransportConfig
    from vigil.transport.jetstream import ConsumerSpec, JetStreamSink

    sink = JetStreamSink(TransportConfig(type="jetstream", url=nats_url), [ConsumerSpec(*consumer)],
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


# --------------------------------------------------------------------------------------------- outlier

def _outlier_env(transport: dict | None) -> dict[str, str]:
    env = {"VIGIL_OUTLIER_MONITOR": MONITOR, "VIGIL_OUTLIER_NAMESPACE": NAMESPACE,
           "VIGIL_OUTLIER_MAX_BATCH_SIZE": "64", "VIGIL_OUTLIER_MAX_BATCH_DELAY_MS": "5"}
    if transport:
        env["VIGIL_OUTLIER_TRANSPORT"] = json.dumps(transport)
    return env


def _all_connected(urls: list[str]) -> bool:
    import httpx

    return all(httpx.get(u + "/status").json()["transport"]["connected"] for u in urls)


def _seen(url: str) -> int:
    import httpx

    return int(httpx.get(url + "/status", timeout=10).json()["outliers"]["seen"])


def _mean(url: str, histogram: str) -> float:
    import httpx

    from tests.servers import metric_value

    text = httpx.get(url + "/metrics", timeout=10).text
    total, count = metric_value(text, histogram + "_sum"), metric_value(text, histogram + "_count")
    return round(total / count, 1) if total is not None and count else 0.0


def _outlier_events(bodies: list[bytes]) -> list:
    """The logger's events of these bodies (`vigil.logger.sinks.Event`: what either sink sends)."""
    from vigil.logger.sinks import Event

    return [Event("request", _attributes(i), body) for i, body in enumerate(bodies)]


def _http_requests(port: int, events: list) -> list[bytes]:
    """Each event as the logger's HTTP sink POSTs it (binary mode, the SDK's headers incl. ce-time), pre-encoded."""
    out = []
    for e in events:
        msg = e.message()
        head = "".join(f"{k}: {v}\r\n" for k, v in msg.headers.items())
        out.append(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(msg.body)}\r\n\r\n"
                   .encode() + msg.body)
    return out


async def _drive_raw(port: int, requests: list[bytes], concurrency: int) -> float:
    """Send every request once over `concurrency` keep-alive connections; seconds taken."""
    queue = iter(requests)
    bad: list = []

    async def caller() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for req in queue:
                writer.write(req)
                status = await read_reply(reader)
                if status[:1] != b"2":
                    bad.append(status)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    if bad:
        sys.exit(f"{len(bad)} events refused over HTTP, e.g. {bad[0]!r}")
    return time.perf_counter() - t0


def _outlier_bodies(n: int) -> list[bytes]:
    """The V2 bodies bench_outlier sends (one row each, mostly iris-like, some far off), repeated to n."""
    from bench.bench_outlier import build_requests

    one = [rest.split(b"\r\n\r\n", 1)[1] for _, rest in build_requests(0)]
    return [one[i % len(one)] for i in range(n)]


class _Nats:
    """The wheel's nats-server with JetStream on a free loopback port, pinned like the client."""

    def __init__(self, store: Path, cpu: str):
        from tests.servers import free_port
        from vigil.transport.server import server_argv, wait_listening

        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        cmd = server_argv(self.port, store)
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_listening("127.0.0.1", self.port):
            self.stop()
            sys.exit("nats-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_outlier(args, work: Path) -> None:
    from bench.bench_outlier import Service, build_requests, drive, train_artifact
    from tests.servers import wait_until

    artifact = Path(args.outlier_artifact) if args.outlier_artifact else train_artifact(work)
    n = args.outlier_events
    print(f"\noutlier (1 row/event, maxBatchSize 64): services on CPU {args.service_cpu}, client, publisher and "
          f"nats-server on CPU {args.client_cpu}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    bodies = _outlier_bodies(n)
    # -- HTTP, one replica: the logger's events, each POSTed as its HTTP sink does
    service = Service(artifact, _outlier_env(None), args.service_cpu)
    try:
        service.wait_ready(timeout=600)  # TensorFlow loads slowly on a busy machine
        asyncio.run(drive(service.port, build_requests(service.port), 16, 800))  # warm-up (the VAE's batch shapes)
        requests = _http_requests(service.port, _outlier_events(bodies))
        before, cpu0 = _seen(service.url), _cpu_seconds(service.proc.pid)
        seconds = asyncio.run(_drive_raw(service.port, requests, 64))
        cpu = _cpu_seconds(service.proc.pid) - cpu0
        scored = _seen(service.url) - before
    finally:
        service.stop()
    http = (n / seconds, n / cpu)
    _outlier_line("HTTP", 1, n, seconds, cpu, scored)
    # -- JetStream, 1 and 2 replicas on one consumer
    for replicas in (1, 2):
        server = _Nats(work / f"nats-outlier-{replicas}", args.client_cpu)
        services = []
        try:
            transport = {"type": "jetstream", "url": server.url}
            services = [Service(artifact, _outlier_env(transport), args.service_cpu) for _ in range(replicas)]
            for s in services:
                s.wait_ready(timeout=600)
            import httpx

            wait_until(partial(_all_connected, [s.url for s in services]), timeout=60, what="outlier consumers bound")
            for s in services:
                os.kill(s.proc.pid, signal.SIGSTOP)
            asyncio.run(_publish_all(server.url, bodies, consumer=("outlier", ("request",))))
            cpu0 = sum(_cpu_seconds(s.proc.pid) for s in services)
            t0 = time.perf_counter()
            for s in services:
                os.kill(s.proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + 600
            while (scored := sum(_seen(s.url) for s in services)) < n and time.monotonic() < deadline:
                time.sleep(0.1)  # a /status poll costs the services CPU too: seldom
            seconds = time.perf_counter() - t0
            cpu = sum(_cpu_seconds(s.proc.pid) for s in services) - cpu0
            shares = [_seen(s.url) for s in services]
            fetch = [_mean(s.url, "vigil_transport_fetch_size") for s in services]
            vae = [_mean(s.url, "vigil_outlier_batch_size") for s in services]
            settled = [httpx.get(s.url + "/status").json()["transport"]["messages"] for s in services]
        finally:
            for s in services:
                os.kill(s.proc.pid, signal.SIGCONT)
                s.stop()
            server.stop()
        _outlier_line("JetStream", replicas, n, seconds, cpu, scored,
                      extra=f"  per replica: scored {shares}, mean fetch {fetch}, mean rows per VAE call {vae}, "
                            f"settled {settled}")
        print(f"  => JetStream ({replicas} replica{'s' if replicas > 1 else ''}) / HTTP: "
              f"{n / seconds / http[0]:.2f}x events/s (wall clock), "
              f"{n / max(cpu, 1e-9) / http[1]:.2f}x events per service CPU-second")
    wall, per_cpu = nats_floor(args, work, bodies)
    print(f"  nats-py floor (fetch 64, headers, sequence, reply publish and ack per event; no parsing or scoring): "
          f"{wall:,.0f} events/s, {per_cpu:,.0f} events per CPU-s = {per_cpu / http[1]:.2f}x HTTP's per CPU-second "
          f"(the target, 3x, needs {3 * http[1]:,.0f})")


async def _floor_consume(url: str, n: int) -> dict:
    """Bind the outlier consumer and settle `n` events as a detector must, doing nothing else: CPU-s taken."""
    import resource

    from vigil.transport import TransportConfig, names
    from vigil.transport.jetstream import connect

    nc = await connect(TransportConfig(type="jetstream", url=url), "bench-floor")
    psub = await nc.jetstream().pull_subscribe_bind(durable="outlier", stream=names.stream_name(NAMESPACE, MONITOR))
    reply = names.reply_subject(NAMESPACE, MONITOR, "outlier")
    from bench.floor_app import outlier_reply

    headers, body = outlier_reply()
    got, t0 = 0, time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    while got < n:
        for m in await psub.fetch(64, timeout=5):
            _ = m.headers, m.metadata.sequence.stream
            await nc.publish(reply, body, headers=headers)
            await m.ack()
            got += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    seconds = time.perf_counter() - t0
    await nc.close()
    return {"seconds": seconds, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}


def nats_floor(args, work: Path, bodies: list[bytes]) -> tuple[float, float]:
    """`_floor_consume` in a process pinned to the service CPU, on a fresh server: (events/s, events per CPU-s)."""
    server = _Nats(work / "nats-floor", args.client_cpu)
    try:
        asyncio.run(_publish_all(server.url, bodies, consumer=("outlier", ("request",))))
        cmd = pinned([sys.executable, __file__, "--floor-consume", server.url, str(len(bodies))], args.service_cpu)
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    finally:
        server.stop()
    return len(bodies) / out["seconds"], len(bodies) / out["cpu"]


def _outlier_line(name: str, replicas: int, n: int, seconds: float, cpu: float, scored: float, extra: str = "") -> None:
    print(f"  {name:<9} {replicas} replica(s): {n / seconds:>8,.0f} events/s  service CPU {cpu / seconds:5.0%} "
          f"({n / max(cpu, 1e-9):,.0f} events per service CPU-s)  scored {scored:,.0f}/{n:,} "
          f"({'ok' if scored == n else 'MISMATCH'}){extra}")


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
    ap.add_argument("--only", choices=("outlier", "drift"), help="run one detector's part (default: both)")
    ap.add_argument("--outlier-events", type=int, default=20_000, help="one-row events per outlier measurement")
    ap.add_argument("--outlier-artifact", help="an OutlierVAE directory (default: train one on iris)")
    ap.add_argument("--floor-consume", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)  # nats_floor's child
    args = ap.parse_args()
    if args.floor_consume:
        print(json.dumps(asyncio.run(_floor_consume(args.floor_consume[0], int(args.floor_consume[1])))))
        return
    _pin(args.client_cpu)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-js-") as tmp:
        if args.only in (None, "outlier"):
            run_outlier(args, Path(tmp))
        if args.only in (None, "drift"):
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
