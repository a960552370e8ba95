"""Real servers on loopback for tests (and the benchmarks).

- `serve_app(app)`: runs an ASGI app in a real uvicorn server on 127.0.0.1 (a free
  port, bound before the server starts so there is no race) in a background thread;
  yields the base URL; shuts down cleanly (lifespan shutdown included).
- `serve_component(name, env)`: starts ``vigil serve NAME --host 127.0.0.1 --port P`` as a subprocess
  with extra environment, waits for ``/readyz``, yields the base URL, then stops it
  (SIGTERM, then SIGKILL). The command line lives in `serve_command` only.
- `EventSink`: a real CloudEvents receiver (parsed with the ``cloudevents`` SDK) that
  records every event; serve its ``.app`` with `serve_app`.
- `metric_value`: read one value from a Prometheus text exposition.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

HOST = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago (for subprocesses, which must bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll `condition` until it returns something truthy; return it, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def serve_app(app, startup_timeout: float = 60.0, log_level: str = "warning") -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a thread; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run():
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - includes uvicorn's SystemExit on startup failure
            failure.append(e)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"server on port {port} failed to start: {failure[0] if failure else 'exited'!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on port {port} did not start within {startup_timeout}s")
        time.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


# -- subprocesses -----------------------------------------------------------------------------------

def serve_command(name: str, port: int) -> list[str]:
    """The command that serves component `name` on `port` on loopback: ``vigil serve``."""
    return [sys.executable, "-m", "vigil", "serve", name, "--host", HOST, "--port", str(port)]


class ServiceURL(str):
    """A base URL that also knows the process serving it (``.pid``)."""

    pid: int


@contextmanager
def serve_component(name: str, env: Optional[dict[str, str]] = None, port: Optional[int] = None,
                    prefix: Sequence[str] = (), ready_path: str = "/readyz", timeout: float = 60.0) -> Iterator[str]:
    """Run one Vigil component as a subprocess; yields its base URL once `ready_path` answers 200.

    `prefix` goes before the command, e.g. ``["taskset", "-c", "0"]``. The URL's ``.pid``
    is the subprocess's.
    """
    port = port or free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    output = tempfile.NamedTemporaryFile(prefix=f"vigil-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen([*prefix, *serve_command(name, port)], env=full_env, stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = ServiceURL(f"http://{HOST}:{port}")
    url.pid = proc.pid

    def tail() -> str:
        output.flush()
        with open(output.name, errors="replace") as f:
            return f.read()[-4000:]

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{tail()}")
            try:
                if httpx.get(url + ready_path, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready at {url}{ready_path} within {timeout}s:\n{tail()}")
            time.sleep(0.05)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        output.close()
        os.unlink(output.name)


# -- a CloudEvents sink -----------------------------------------------------------------------------

@dataclass
class ReceivedEvent:
    path: str
    headers: dict[str, str]  # lower-case names, as received
    attributes: dict[str, Any]
    data: Any  # parsed JSON when the content type is JSON
    body: bytes
    received_at: float

    @property
    def type(self) -> str:
        return self.attributes["type"]


class EventSink:
    """A real CloudEvents HTTP receiver that records events.

    ``status`` is what it answers (e.g. 503 to exercise retries), ``delay`` how long it
    takes per event (a slow sink), ``fail_first`` how many first attempts get a 503.
    """

    def __init__(self, status: int = 200, delay: float = 0.0, fail_first: int = 0):
        self.status = status
        self.fail_first = fail_first
        self.delay = delay
        self.events: list[ReceivedEvent] = []
        self.invalid = 0
        self.attempts = 0
        self._cond = threading.Condition()
        app = FastAPI()

        @app.post("/{path:path}")
        async def receive(request: Request, path: str):
            from cloudevents.core.bindings.http import HTTPMessage, from_http
            from cloudevents.core.formats.json import JSONFormat

            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self._cond:
                self.attempts += 1
                failing = self.attempts <= self.fail_first
            if failing:
                return Response(status_code=503)
            if self.delay:
                await asyncio.sleep(self.delay)
            try:
                event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
            except Exception as e:  # noqa: BLE001 - record, answer 400
                with self._cond:
                    self.invalid += 1
                return Response(f"not a CloudEvent: {e}", status_code=400)
            if self.status >= 300:
                return Response(status_code=self.status)
            record = ReceivedEvent("/" + path, headers, dict(event.get_attributes()), event.get_data(), body,
                                   time.monotonic())
            with self._cond:
                self.events.append(record)
                self._cond.notify_all()
            return Response(status_code=self.status)

        self.app = app

    def wait_for(self, n: int, timeout: float = 10.0, type: Optional[str] = None) -> list[ReceivedEvent]:
        """Block until at least `n` events (of `type`, if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self.events if type is None or e.type == type]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"sink got {len(got)} events{' of ' + type if type else ''}, expected {n}")
                self._cond.wait(left)

    def snapshot(self) -> list[ReceivedEvent]:
        with self._cond:
            return list(self.events)


# -- Prometheus ---------------------------------------------------------------------------------------

def metric_value(exposition: str, name: str, **labels: str) -> Optional[float]:
    """Sum of the samples called `name` whose labels include `labels`; None if there is none."""
    from prometheus_client.parser import text_string_to_metric_families

    total, found = 0.0, False
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
                found = True
    return total if found else None
