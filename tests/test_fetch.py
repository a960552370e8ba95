"""`vigil fetch` (vigil/storage.py): what every pod's init container and every training
Job's upload step runs, as the real command on real files and a real HTTP server on
127.0.0.1; and the operator's refusal of addresses pods must never call
(vigil_operator/addresses.py).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vigil.storage import StorageError, fetch, push
from vigil_operator import addresses


def vigil_fetch(*pairs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil", "fetch", *pairs], capture_output=True, text=True)


def test_copies_a_file_and_a_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.joblib").write_bytes(b"model")
    (tmp_path / "src" / "sub").mkdir()
    (tmp_path / "src" / "sub" / "x").write_text("x")
    result = vigil_fetch(str(tmp_path / "src" / "model.joblib"), str(tmp_path / "data" / "a" / "model.joblib"),
                         f"file://{tmp_path}/src", str(tmp_path / "data" / "b" / "dir"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "a" / "model.joblib").read_bytes() == b"model"
    assert (tmp_path / "data" / "b" / "dir" / "sub" / "x").read_text() == "x"
    # no temporary leftovers beside the targets
    assert sorted(p.name for p in (tmp_path / "data" / "a").iterdir()) == ["model.joblib"]


def test_archives_are_unpacked_into_the_destination(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("saved/model.keras")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "m.tar.gz").write_bytes(buf.getvalue())
    with zipfile.ZipFile(tmp_path / "m.zip", "w") as z:
        z.writestr("a/b.txt", "zip")
    fetch(str(tmp_path / "m.tar.gz"), str(tmp_path / "out" / "m"))
    fetch(str(tmp_path / "m.zip"), str(tmp_path / "out" / "z"))
    assert (tmp_path / "out" / "m" / "saved" / "model.keras").read_bytes() == b"abc"
    assert (tmp_path / "out" / "z" / "a" / "b.txt").read_text() == "zip"


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archive_members_may_not_leave_the_destination(tmp_path, kind):
    if kind == "tar":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            info = tarfile.TarInfo("../../escaped")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        (tmp_path / "bad.tar.gz").write_bytes(buf.getvalue())
        src = tmp_path / "bad.tar.gz"
    else:
        with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
            z.writestr("../escaped", "x")
        src = tmp_path / "bad.zip"
    (tmp_path / "deep" / "er").mkdir(parents=True)
    result = vigil_fetch(str(src), str(tmp_path / "deep" / "er" / "out"))
    assert result.returncode == 1 and "outside" in result.stderr
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not (tmp_path / "deep" / "er" / "out").exists()


def test_a_new_copy_replaces_the_old_one_whole(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "old").write_text("1")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "new").write_text("2")
    push(str(tmp_path / "v1"), str(tmp_path / "artifacts" / "outlier"))
    push(str(tmp_path / "v2"), str(tmp_path / "artifacts" / "outlier"))
    assert sorted(p.name for p in (tmp_path / "artifacts" / "outlier").iterdir()) == ["new"]
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["outlier"]


def test_missing_source_fails_and_names_it(tmp_path):
    result = vigil_fetch(str(tmp_path / "nope.csv"), str(tmp_path / "out.csv"))
    assert result.returncode == 1 and "nope.csv" in result.stderr and "not found" in result.stderr
    assert vigil_fetch(str(tmp_path / "only-one")).returncode == 2
    with pytest.raises(StorageError):
        push(str(tmp_path / "nope"), str(tmp_path / "x"))


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_and_http_sources_through_fsspec(http_root, tmp_path):
    root, url = http_root
    (root / "reference.csv").write_text("a,b\n1,2\n")
    with zipfile.ZipFile(root / "model.zip", "w") as z:
        z.writestr("model.joblib", "m")
    result = vigil_fetch(f"{url}/reference.csv", str(tmp_path / "d" / "reference.csv"),
                         f"{url}/model.zip", str(tmp_path / "d" / "model"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "reference.csv").read_text() == "a,b\n1,2\n"
    assert (tmp_path / "d" / "model" / "model.joblib").read_text() == "m"
    result = vigil_fetch(f"{url}/missing.csv", str(tmp_path / "d" / "missing.csv"))
    assert result.returncode == 1 and "missing.csv" in result.stderr


# ----------------------------------------------------------------------------- refused addresses

@pytest.mark.parametrize("url, why", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fe80::1]/m.joblib", "link-local"),
    ("http://[fd00:ec2::254]/", "link-local"),
    ("http://127.0.0.1:8080", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://0.0.0.0:80", "unspecified"),
    ("https://kubernetes.default.svc/api", "API server"),
    ("https://kubernetes.default.svc.cluster.local/api", "API server"),
    ("https://kubernetes/api", "API server"),
    ("https://10.96.0.1/api", "API server"),  # KUBERNETES_SERVICE_HOST below
    ("https://localhost/model.joblib", "resolves to 127.0.0.1"),  # a name, resolved (/etc/hosts)
])
async def test_refused_hosts(url, why, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    reason = await addresses.check_url(url, addresses.api_server_hosts())
    assert reason and why in reason, reason


@pytest.mark.parametrize("url", ["https://models.example.com/iris/model.joblib", "http://10.0.0.5:8080",
                                 "http://fraud-model.prod.svc:8080"])
async def test_allowed_hosts(url, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert await addresses.check_url(url, addresses.api_server_hosts()) is None


async def test_the_operators_own_api_server_is_refused():
    hosts = addresses.api_server_hosts("https://203.0.113.7:6443")
    assert "the Kubernetes API server" in await addresses.check_url("https://203.0.113.7:443/x", hosts)


def test_the_pods_command_is_vigil_fetch_without_the_cli(tmp_path):
    """The init containers run `python -m vigil.storage` (manifests.FETCH_COMMAND): the same
    copy as `vigil fetch`, without importing the CLI's component registry."""
    from vigil_operator.manifests import FETCH_COMMAND

    (tmp_path / "a.csv").write_text("x\n")
    result = subprocess.run([sys.executable, *FETCH_COMMAND[1:], str(tmp_path / "a.csv"), str(tmp_path / "d" / "a.csv")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "a.csv").read_text() == "x\n"
    check = subprocess.run([sys.executable, "-c", "import sys, vigil.storage; "
                            "print(sorted(m for m in ('vigil.spec', 'vigil.components', 'numpy') if m in sys.modules))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "[]", check.stdout + check.stderr
