"""Copy models, reference data and artifacts between storage and a pod's own volume.

`vigil fetch SRC DEST [SRC DEST ...]`, or ``python -m vigil.storage SRC DEST ...`` (the
same, without loading the CLI's imports: what every pod's ``fetch`` init container and
every training Job's upload step runs, in a fraction of the memory), copies storage into
a pod (the operator renders the pairs; KServe's storage initializer does the same job).
Each side is a local path or an fsspec URL: ``s3://`` (needs s3fs), ``gs://`` (gcsfs),
``https://``/``http://``, ``file://``. Credentials come from the environment the usual way
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, IRSA / Workload Identity), i.e. the monitor's
storage Secret and service account.

- A file is copied, a directory recursively.
- An archive (``.tar.gz``, ``.tgz``, ``.zip``) copied to a local DEST is unpacked into the
  directory DEST; members that would land outside it (absolute paths, ``..``, links
  leaving it) are refused.
- A local DEST appears whole or not at all: the copy goes to a temporary sibling which is
  then renamed over DEST (an existing DEST is replaced), so a reader never sees half a
  model and a retrained artifact replaces the old one in one step.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVES = (".tar.gz", ".tgz", ".zip")


class StorageError(RuntimeError):
    """A copy that cannot be done; the message says which and why."""


def _is_url(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def _local(s: str) -> Path:
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def _filesystem(url: str):
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as e:  # s3fs / gcsfs not installed
        raise StorageError(f"{url}: {e} (pip install 'vigil-ml[storage]')") from None
    return fs, path


def _archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                p = PurePosixPath(member)
                if p.is_absolute() or ".." in p.parts:
                    raise StorageError(f"{archive.name}: member {member!r} would land outside the directory")
            z.extractall(dest)
        return
    with tarfile.open(archive) as t:
        try:
            t.extractall(dest, filter="data")  # refuses absolute paths, '..', links outside, devices
        except tarfile.FilterError as e:
            raise StorageError(f"{archive.name}: {e}") from None


def _download(src: str, dest: Path) -> None:
    """src (URL or local path) -> dest (a path that does not exist yet)."""
    if _is_url(src):
        fs, path = _filesystem(src)
        try:
            if fs.isdir(path):
                fs.get(path.rstrip("/") + "/", str(dest), recursive=True)
            else:
                fs.get(path, str(dest))
        except FileNotFoundError:
            raise StorageError(f"{src}: not found") from None
    else:
        local = _local(src)
        if local.is_dir():
            shutil.copytree(local, dest, symlinks=False)
        elif local.exists():
            shutil.copyfile(local, dest)
        else:
            raise StorageError(f"{src}: not found")
    if not dest.exists():
        raise StorageError(f"{src}: nothing was copied")


def fetch(src: str, dest: str) -> Path:
    """Copy `src` to the local path `dest` (unpacking an archive); returns dest."""
    target = _local(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    name = src.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        staged = Path(tmp) / "staged"
        if _archive(name):
            raw = Path(tmp) / name
            _download(src, raw)
            _unpack(raw, staged)
        else:
            _download(src, staged)
        old = Path(tmp) / "old"
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        os.replace(staged, target)
    return target


def push(src: str, dest: str) -> None:
    """Copy the local file or directory `src` to `dest` (a URL or a local path)."""
    local = _local(src)
    if not local.exists():
        raise StorageError(f"{src}: not found")
    if not _is_url(dest):
        fetch(str(local), dest)
        return
    fs, path = _filesystem(dest)
    if local.is_dir():
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.put(str(local).rstrip("/") + "/", path, recursive=True)
    else:
        fs.put(str(local), path)


def copy(src: str, dest: str) -> None:
    """`vigil fetch` of one pair: download when DEST is local, else upload."""
    if _is_url(dest):
        push(src, dest)
    else:
        fetch(src, dest)


def main(argv=None) -> int:
    """Copy each SRC DEST pair in order; exit 1 naming the first that fails, 2 on bad usage."""
    pairs = list(sys.argv[1:] if argv is None else argv)
    if not pairs or len(pairs) % 2:
        print("usage: vigil fetch SRC DEST [SRC DEST ...]", file=sys.stderr)
        return 2
    for src, dest in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            copy(src, dest)
        except (StorageError, OSError) as e:
            print(f"error: {src} -> {dest}: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # a backend's own, e.g. botocore's EndpointConnectionError: one line, not a traceback
            print(f"error: {src} -> {dest}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"{src} -> {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
