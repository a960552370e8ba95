"""`kubectl get monitors` shows what real component processes report.

The operator runs (kopf, against the API emulator) while the monitor's components run as
real local processes (`vigil serve model|logger|drift`) configured with the very env the
operator put in their ConfigMaps — only addresses and file paths are rewritten from the
cluster's to loopback's. The operator polls their /status (through
``VIGIL_OPERATOR_STATUS_URLS``-style overrides) exactly as it would poll the Services.
Traffic goes client -> logger -> model, the logger's CloudEvents reach the drift detector;
shifted traffic makes the drift detector detect drift and DRIFT turns true in kubectl.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.operator_harness import cluster, eventually, running_operator
from tests.servers import serve_component
from tests.tools import kubectl_path
from vigil.events import v2_request
from vigil_operator.placement import resolve

pytestmark = [pytest.mark.asyncio, pytest.mark.tensorflow]  # the drift detector imports alibi-detect

FEATURES = ["a", "b", "c"]
WINDOW = 100


def monitor_doc(tmp_path) -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "iris", "namespace": "default"},
            "spec": {"model": {"storageUri": f"file://{tmp_path}/model.joblib", "name": "iris"},
                     "schema": {"featureNames": FEATURES},
                     "reference": {"storageUri": f"file://{tmp_path}/reference.csv"},
                     "detectors": {"drift": {"pValue": 0.05, "window": {"size": WINDOW, "maxAge": "1h"}}}}}


def local_env(configmap: dict, tmp_path, urls: dict) -> dict:
    """A component's env from its ConfigMap, with cluster paths and addresses made local."""
    env = dict(configmap["data"])
    # each pod reads its own copy of a file (fetched by its init container): here, the file itself
    copies = {resolve(f"file://{tmp_path}/{f}").path: str(tmp_path / f) for f in ("model.joblib", "reference.csv")}
    for key, value in env.items():
        env[key] = copies.get(value, value)
    if "VIGIL_DRIFT_STATE_DIR" in env:
        env["VIGIL_DRIFT_STATE_DIR"] = str(tmp_path / "drift-state")
    if "VIGIL_LOGGER_UPSTREAM" in env:
        env["VIGIL_LOGGER_UPSTREAM"] = urls["model"]
        sinks = json.loads(env["VIGIL_LOGGER_SINKS"])
        env["VIGIL_LOGGER_SINKS"] = json.dumps([{**s, "url": urls[s["name"]]} for s in sinks])
    return env


async def kubectl_row(c) -> dict:
    proc = await asyncio.create_subprocess_exec(kubectl_path(), "get", "monitors", stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE,
                                                env={**os.environ, "KUBECONFIG": str(c.admin_kubeconfig)})
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    header, row = out.decode().strip().splitlines()
    return dict(zip(header.split(), row.split(), strict=False))


async def test_status_columns_follow_real_detector_processes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1000, 3))
    pd.DataFrame(ref, columns=FEATURES).to_csv(tmp_path / "reference.csv", index=False)
    joblib.dump(LogisticRegression().fit(ref, (ref[:, 0] > 0).astype(int)), tmp_path / "model.joblib")

    from tests.servers import free_port

    ports = {name: free_port() for name in ("model", "logger", "drift")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    status_urls = {f"default/iris/{name}": url for name, url in urls.items()}

    async with cluster(tmp_path) as c, running_operator(c, monkeypatch, status_urls=status_urls,
                                                        allow_host_path=True) as runtime:
        await c.create_monitor(monitor_doc(tmp_path))
        await eventually(lambda: len(c.objects("Deployment")) == 3, what="Deployments")
        for name in c.objects("Deployment"):
            await c.rollout(name)  # the deployment controller's part
        await eventually(lambda: c.status("iris").get("components", {}).get("drift") == "Unreachable",
                         what="rolled out, no process yet")
        assert c.status("iris")["phase"] == "Progressing"

        # start the three components from the operator's own ConfigMaps (in threads: the
        # emulator and kopf keep running on this loop while the processes come up)
        configmaps = c.objects("ConfigMap")
        managers = {name: serve_component(name, env=local_env(configmaps[f"iris-{name}"], tmp_path, urls),
                                          port=ports[name], timeout=120)
                    for name in ("drift", "model", "logger")}
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            started = await asyncio.gather(*(loop.run_in_executor(pool, m.__enter__) for m in managers.values()))
        try:
            assert started == [urls[n] for n in managers]
            status = await eventually(lambda: c.status("iris").get("phase") == "Ready" and c.status("iris"),
                                      timeout=30, what="phase Ready")
            assert status["components"] == {"logger": "Ready", "model": "Ready", "drift": "Ready"}
            assert status["drift"]["detected"] is False and status["drift"]["windows"] == 0
            row = await kubectl_row(c)
            assert (row["NAME"], row["MODEL"], row["PHASE"], row["DRIFT"]) == ("iris", "iris", "Ready", "false")

            async with httpx.AsyncClient(base_url=urls["logger"], timeout=30) as client:
                async def infer(rows):
                    for i in range(0, len(rows), 10):
                        r = await client.post("/v2/models/iris/infer", json=v2_request(rows[i:i + 10]))
                        assert r.status_code == 200, r.text

                await infer(rng.normal(size=(WINDOW, 3)))  # like the reference: no drift
                status = await eventually(lambda: (c.status("iris").get("drift") or {}).get("windows") == 1
                                          and c.status("iris"), timeout=30, what="one drift window checked")
                assert status["drift"]["detected"] is False and status["drift"]["pValue"] > 0.05

                shifted = rng.normal(size=(WINDOW, 3))
                shifted[:, 2] += 3.0  # feature c moves
                await infer(shifted)
                status = await eventually(lambda: (c.status("iris").get("drift") or {}).get("windows") == 2
                                          and c.status("iris"), timeout=30, what="second drift window checked")
            assert status["drift"]["detected"] is True
            assert status["drift"]["featuresDrifted"] == ["c"] and status["drift"]["pValue"] < 0.05
            assert status["phase"] == "Ready"
            drift_condition = next(x for x in status["conditions"] if x["type"] == "DriftDetected")
            assert drift_condition["status"] == "True"
            row = await kubectl_row(c)
            assert (row["PHASE"], row["DRIFT"]) == ("Ready", "true")
            events = await eventually(lambda: c.events(reason="DriftDetected"), what="a DriftDetected event")
            assert events[0]["type"] == "Warning" and "features drifted: c" in events[0]["message"]
            assert events[0]["involvedObject"]["name"] == "iris"
        finally:
            for m in reversed(list(managers.values())):
                m.__exit__(None, None, None)
        # the processes are gone: the monitor is no longer Ready
        status = await eventually(lambda: c.status("iris").get("phase") == "Progressing" and c.status("iris"),
                                  timeout=30, what="phase after the processes stopped")
        assert set(status["components"].values()) == {"Unreachable"}
        assert not c.forbidden()
        assert runtime.metrics.monitors.labels("Progressing")._value.get() == 1
