"""A real Prometheus (Debian's package) for tests: start it on loopback, scrape, query.

On CI (CI=true) a missing binary is a failure, not a skip: the tests that need it are
part of what the project promises.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path:
        return path
    message = f"{binary} not found: install Debian's prometheus package (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port_range(n: int) -> int:
    """A base port N with N..N+n-1 all free (for `vigil up --base-port`)."""
    for _ in range(200):
        base = free_port()
        if base + n > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@contextmanager
def prometheus(targets: list[str], tmp: Path, interval: str = "1s"):
    """Yield a query(promql) -> list of results function for a Prometheus scraping `targets`."""
    binary = need("prometheus")
    port = free_port()
    cfg = tmp / "prometheus.yml"
    hosts = ", ".join(f"'{t.removeprefix('http://')}'" for t in targets)
    cfg.write_text(f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n"
                   f"scrape_configs:\n  - job_name: vigil\n    static_configs: [{{targets: [{hosts}]}}]\n")
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=5)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/-/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not start:\n" + (tmp / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)

        def query(promql: str) -> list:
            r = client.get("/api/v1/query", params={"query": promql})
            r.raise_for_status()
            return r.json()["data"]["result"]

        query.base = base
        query.client = client
        yield query
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(query, promql: str, timeout: float = 30.0, predicate=bool) -> list:
    """Poll a query until `predicate(result)` holds; return the result."""
    deadline = time.monotonic() + timeout
    while True:
        result = query(promql)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{promql!r} never satisfied the condition; last result: {result}")
        time.sleep(0.5)
