"""A whole local Vigil to look at through Prometheus: what the dashboards are tested on.

`LiveStack` runs, on 127.0.0.1 only:

- `vigil up` of an iris ModelMonitor with every detector (model, logger, outlier,
  drift, metrics, explainer, quality as real processes; the VAE and the explainer trained first);
- the operator (`vigil operator`) against the project's Kubernetes API emulator
  (tests/kubeemu.py, kmock) holding the same monitor, so its own metrics exist too;
- Debian's `prometheus`, scraping every component as job "vigil" with the `component`,
  `monitor` and `namespace` target labels the chart's PodMonitor gives them in a cluster,
  and the operator as job "vigil-operator";

then `traffic()` sends normal, drifted and outlier traffic with feedback through the logger,
a few rejected requests and a few explanations (bench/traffic.py). Used by
tests/test_dashboards_live.py and bench/render_dashboards.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.prom import free_port_range  # noqa: E402  (the bench reuses the tests' loopback helpers)

NAMESPACE, MONITOR = "live", "iris"
COMPONENTS = ("logger", "model", "outlier", "drift", "metrics", "explainer", "quality")  # port order of vigil up
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def monitor_doc(window: int, storage: str = "") -> dict:
    """The monitor; `storage` prefixes the file names (pvc://models/iris/ for the emulator)."""
    return {
        "apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor",
        "metadata": {"name": MONITOR, "namespace": NAMESPACE},
        "spec": {
            "model": {"storageUri": f"{storage}model.joblib", "format": "sklearn", "name": "iris"},
            "schema": {"featureNames": FEATURES},
            "reference": {"storageUri": f"{storage}reference.csv"},
            "logger": {"mode": "all"},
            "detectors": {
                "outlier": {"type": "vae", "thresholdPercentile": 95, "epochs": 10, "maxBatchSize": 64,
                            "maxBatchDelayMs": 5},
                "drift": {"type": "ks", "pValue": 0.05, "window": {"size": window, "mode": "tumbling",
                                                                    "maxAge": "10m"}},
                "metrics": {"task": "classification", "classes": ["setosa", "versicolor", "virginica"],
                            "window": window},
                "explainer": {"type": "anchor-tabular", "threshold": 0.9, "sampleRate": 0.0},
                "quality": {"window": {"size": window, "maxAge": "10m"}},
            },
        },
    }


def _wait(url: str, timeout: float, proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url} not ready (timeout {timeout:.0f}s or process exited)\n{tail}")
        time.sleep(0.5)


class _Emulator:
    """tests/kubeemu.KubeEmulator served by kmock in a thread of its own."""

    def __init__(self):
        from tests import kubeemu  # tests/kubeemu.py, which imports tests/crdschema.py

        self._kubeemu = kubeemu
        self.url: Optional[str] = None
        self.emulator = None
        self._loop = asyncio.new_event_loop()
        self._stop: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="kubeemu", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"API emulator did not start: {self._error!r}")
        return self.url

    def _run(self) -> None:
        from kmock._internal import apps

        async def main():
            self._stop = asyncio.Event()
            try:
                crd = ROOT / "crds" / "modelmonitors.vigil.dev.yaml"
                async with self._kubeemu.KubeEmulator(crds=[crd]) as emu, apps.Server(emu) as server:
                    self.emulator = emu
                    self.url = str(server.url).rstrip("/")
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # report start-up failures to start()
                self._error = exc
                self._ready.set()

        self._loop.run_until_complete(main())

    def kubeconfig(self, path: Path) -> Path:
        return self._kubeemu.kubeconfig(self.url, path, namespace=NAMESPACE)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class LiveStack:
    def __init__(self, workdir: Path, window: int = 200, with_operator: bool = True, scrape_interval: str = "1s",
                 say=lambda _msg: None):
        self.workdir = Path(workdir)
        self.window = window
        self.with_operator = with_operator
        self.scrape_interval = scrape_interval
        self.say = say
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.base = 0
        self.urls: dict[str, str] = {}
        self.prometheus_url = ""
        self.operator_metrics = ""
        self.emulator: Optional[_Emulator] = None
        self._client = httpx.Client(timeout=10)

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> LiveStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str], env: Optional[dict] = None) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=self.workdir,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        from vigil.demo import prepare

        self.workdir.mkdir(parents=True, exist_ok=True)
        prepare(self.workdir, lambda _msg: None)  # model.joblib, reference.csv (the demo's own)
        monitor = self.workdir / "live-monitor.yaml"
        monitor.write_text(yaml.safe_dump(monitor_doc(self.window)))
        self.base = free_port_range(len(COMPONENTS))
        self.urls = {c: f"http://127.0.0.1:{self.base + i}" for i, c in enumerate(COMPONENTS)}
        self.say(f"vigil up on ports {self.base}..{self.base + len(COMPONENTS) - 1} (trains the VAE and the explainer)")
        up = self._spawn("vigil-up", [sys.executable, "-m", "vigil", "up", str(monitor), "--base-port",
                                      str(self.base), "--workdir", str(self.workdir / "work")])
        for c in COMPONENTS:
            path = "/v2/health/ready" if c == "model" else "/readyz"
            _wait(self.urls[c] + path, 600, up, self.logs["vigil-up"])
        targets = [(c, self.urls[c]) for c in COMPONENTS]
        if self.with_operator:
            self._start_operator()
        self._start_prometheus(targets)

    def _start_operator(self) -> None:
        import json

        self.say("operator against the API emulator")
        self.emulator = _Emulator()
        self.emulator.start()
        config = self.emulator.kubeconfig(self.workdir / "kubeconfig")
        health, metrics = free_port_range(2), None
        metrics = health + 1
        status_urls = {f"{NAMESPACE}/{MONITOR}/{c}": self.urls[c] for c in COMPONENTS}
        env = {"KUBECONFIG": str(config), "VIGIL_OPERATOR_STATUS_URLS": json.dumps(status_urls),
               "VIGIL_OPERATOR_STATUS_INTERVAL": "2"}
        proc = self._spawn("operator", [sys.executable, "-m", "vigil", "operator", "--namespace", NAMESPACE,
                                        "--liveness-port", str(health), "--metrics-port", str(metrics)], env)
        _wait(f"http://127.0.0.1:{health}/healthz", 60, proc, self.logs["operator"])
        self.operator_metrics = f"http://127.0.0.1:{metrics}"
        # the same monitor, as a cluster would hold it (storage on a claim)
        doc = monitor_doc(self.window, storage="pvc://models/iris/")
        sys.path.insert(0, str(ROOT))
        from tests.tools import kubectl_path

        manifest = self.workdir / "cluster-monitor.yaml"
        manifest.write_text(yaml.safe_dump(doc))
        # --validate=false: the emulator serves no OpenAPI document; it validates against the CRD itself.
        applied = subprocess.run([kubectl_path(), "apply", "--validate=false", "-f", str(manifest)],
                                 capture_output=True, text=True,
                                 env={**os.environ, "KUBECONFIG": str(config)})
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply of the monitor failed: {applied.stderr}")

    def _start_prometheus(self, targets: list[tuple[str, str]]) -> None:
        import shutil

        binary = shutil.which("prometheus")
        if not binary:
            raise FileNotFoundError("prometheus not found: apt-get install -y prometheus (Debian)")
        port = free_port_range(1)
        static = [{"targets": [url.removeprefix("http://")],
                   "labels": {"component": c, "monitor": MONITOR, "namespace": NAMESPACE}} for c, url in targets]
        scrape = [{"job_name": "vigil", "honor_labels": True, "static_configs": static}]
        if self.operator_metrics:
            scrape.append({"job_name": "vigil-operator", "static_configs": [
                {"targets": [self.operator_metrics.removeprefix("http://")], "labels": {"namespace": "vigil-system"}}]})
        config = {"global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
                  "rule_files": [str(ROOT / "alerts" / "vigil-rules.yaml")], "scrape_configs": scrape}
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        proc = self._spawn("prometheus", [binary, f"--config.file={path}",
                                          f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                                          f"--web.listen-address=127.0.0.1:{port}"])
        self.prometheus_url = f"http://127.0.0.1:{port}"
        _wait(self.prometheus_url + "/-/ready", 60, proc, self.logs["prometheus"])
        # Ready is not scraping yet (targets are applied a few seconds later): wait for a first
        # scrape of every target, so the counters' values before any traffic are recorded.
        expected = len(targets) + (1 if self.operator_metrics else 0)
        deadline = time.monotonic() + 60
        while True:
            result = self.query("count(up == 1)")
            if result and int(float(result[0]["value"][1])) == expected:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not scrape all {expected} targets: {self.query('up')}")
            time.sleep(0.5)
        time.sleep(2 * float(self.scrape_interval.rstrip("s")))
        self.say(f"prometheus on {self.prometheus_url}")

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self.emulator:
            self.emulator.stop()
        self._client.close()

    # -- using it -------------------------------------------------------------------------------
    def traffic(self, rows: Optional[int] = None, explanations: int = 2):
        sys.path.insert(0, str(ROOT / "bench"))
        import traffic

        return traffic.send(self.urls["logger"], rows=rows or self.window, batch=10, bad=3,
                            explain_url=self.urls["explainer"], explanations=explanations)

    def query(self, promql: str, time_: Optional[float] = None) -> list:
        params = {"query": promql}
        if time_ is not None:
            params["time"] = str(time_)
        r = self._client.get(self.prometheus_url + "/api/v1/query", params=params)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list:
        r = self._client.get(self.prometheus_url + "/api/v1/query_range",
                             params={"query": promql, "start": start, "end": end, "step": step})
        r.raise_for_status()
        return r.json()["data"]["result"]

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the detectors have seen the traffic and Prometheus has scraped it."""
        deadline = time.monotonic() + timeout
        checks = {
            "drift windows": (f'sum(vigil_drift_windows_total{{monitor="{MONITOR}"}})', 3),
            "metrics feedback": (f'sum(vigil_metrics_feedback_total{{monitor="{MONITOR}"}})', 1),
            "explanations": (f'sum(vigil_explainer_explanations_total{{monitor="{MONITOR}"}})', 1),
        }
        pending = dict(checks)
        while pending:
            for name, (q, at_least) in list(pending.items()):
                result = self.query(q)
                if result and float(result[0]["value"][1]) >= at_least:
                    pending.pop(name)
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"not seen in Prometheus within {timeout:.0f}s: {sorted(pending)}")
            time.sleep(0.5)
        time.sleep(3 * float(self.scrape_interval.rstrip("s")))  # a few more scrapes of the settled state
