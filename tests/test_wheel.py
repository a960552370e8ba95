"""The distribution users install: build the wheel, install it into a fresh virtualenv, run it.

The wheel is built from a copy of the sources (so the checkout gets no build/ or
egg-info), installed with `--no-deps` into a new venv that sees the test venv's
site-packages through a `.pth` line (the base dependencies without downloading them
again), and its metadata's base requirements are checked against what that venv
resolves. Then `vigil --version` and `vigil demo --help` run from the venv's own
script, with no PYTHONPATH, from a directory outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import vigil

ROOT = Path(__file__).resolve().parent.parent
DIST = "vigil-ml"
SOURCES = ("pyproject.toml", "README.md", "vigil", "operator", "detectors")

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
                            capture_output=True, text=True, timeout=600, env=_clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_is_named_and_licensed_for_pypi(wheel):
    assert wheel.name.startswith(f"vigil_ml-{vigil.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert f"Name: {DIST}\n" in meta and f"Version: {vigil.__version__}\n" in meta
    assert "License-Expression: Apache-2.0\n" in meta
    assert "vigil = vigil.cli:main" in entry_points
    for package in ("vigil/cli.py", "vigil/init.py", "vigil_operator/__init__.py", "vigil_detectors/__init__.py"):
        assert package in names, package
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # the test venv's packages (the base dependencies), after the new venv's own site-packages
    shared = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (Path(purelib) / "_shared_deps.pth").write_text("\n".join(sorted(shared)) + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet",
                             str(wheel)], capture_output=True, text=True, timeout=600, env=_clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def _run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**_clean_env(), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"})


def test_installed_wheel_runs_the_cli(venv, tmp_path):
    where = _run(venv, str(venv / "bin" / "python"), "-c",
                 "import json, vigil, vigil_operator, vigil_detectors; "
                 "print(json.dumps([vigil.__file__, vigil_operator.__file__, vigil_detectors.__file__]))",
                 cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    for path in json.loads(where.stdout):
        assert path.startswith(str(venv)), path  # the installed wheel, not the checkout
    version = _run(venv, str(venv / "bin" / "vigil"), "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"vigil {vigil.__version__}"
    demo = _run(venv, str(venv / "bin" / "vigil"), "demo", "--help", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "--keep-running" in demo.stdout and "Traceback" not in demo.stderr


def test_base_requirements_of_the_wheel_are_met(venv, tmp_path):
    """What `pip install vigil-ml` would resolve is what the CLI just ran with."""
    script = (
        "import json; from importlib import metadata; from packaging.requirements import Requirement\n"
        f"reqs = [Requirement(r) for r in metadata.requires({DIST!r})]\n"
        "bad = []\n"
        "for r in reqs:\n"
        "    if r.marker is not None and not r.marker.evaluate({'extra': ''}):\n"
        "        continue\n"
        "    try:\n"
        "        v = metadata.version(r.name)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        bad.append(f'{r}: missing'); continue\n"
        "    if not r.specifier.contains(v, prereleases=True):\n"
        "        bad.append(f'{r}: found {v}')\n"
        "print(json.dumps({'base': [r.name for r in reqs if r.marker is None], 'bad': bad}))\n"
    )
    result = _run(venv, str(venv / "bin" / "python"), "-c", script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert "xgboost-cpu" in doc["base"] and "tensorflow" not in doc["base"]
    assert doc["bad"] == []
