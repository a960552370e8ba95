"""Processes that must stay light never import TensorFlow (or alibi/alibi-detect).

Each module is imported in a fresh interpreter, with the app built where it has one, so
a stray top-level import anywhere beneath it shows up here.
"""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris-monitor.yaml"
HEAVY = ("tensorflow", "alibi", "alibi_detect", "tf_keras", "keras")

CASES = {
    "cli": "import vigil.cli; vigil.cli.build_parser()",
    "logger": "from vigil.logger.app import create_app; create_app()",
    "model server (sklearn)": "import vigil.modelserver.app, vigil.modelserver.loaders",
    "operator": "import vigil_operator.handlers, vigil_operator.runner, vigil_operator.manifests",
    "status and plan": "import vigil.status, vigil.plan, vigil.local, vigil.demo",
    "operator planning (builds every settings class)": (
        "import yaml, pathlib, vigil_operator.reconcile as r, vigil.plan as p, vigil_operator.placement as pl\n"
        f"m = r.load(yaml.safe_load(pathlib.Path({str(EXAMPLE)!r}).read_text()))\n"
        "p.build_plan(m, pl.KubePlacement(m.name, m.namespace))"),
    "detector frame": "import vigil_detectors.frame",
    "drift/metrics service modules": "import vigil_detectors.drift.service, vigil_detectors.metrics.service",
}


@pytest.mark.parametrize("name", CASES)
def test_no_tensorflow(name):
    code = CASES[name] + f"\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"VIGIL_LOGGER_UPSTREAM": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"{name} imported {out.stdout}"
