"""`vigil fetch` with s3:// (vigil/storage.py through s3fs) against a real S3-compatible
server on 127.0.0.1 (moto's ThreadedMotoServer), pointed at the way a MinIO user points it:
``AWS_ENDPOINT_URL`` and the key pair in the environment (the monitor's storage Secret).
Both directions run as the real command in a subprocess: a training Job's upload
(local -> s3://) and an init container's download (s3:// -> local, archives unpacked).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "vigil-models"


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def env(endpoint, tmp_path):
    """The environment an init container gets from the storage Secret, nothing from ~/.aws."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="vigil", AWS_SECRET_ACCESS_KEY="vigil-secret",
             AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "no-config"),
             AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"))
    return e


@pytest.fixture
def s3(endpoint, env):
    """A boto3 client on the same server (the test's own view of the bucket), bucket emptied."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return client


def vigil_fetch(env, *pairs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vigil", "fetch", *pairs], capture_output=True, text=True,
                          env=env, timeout=120)


def keys(s3, prefix: str) -> dict[str, bytes]:
    out = {}
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
        out[obj["Key"]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_artifact(root: Path) -> dict[str, bytes]:
    files = {
        "model.joblib": os.urandom(1_500_000),
        "meta.json": b'{"version": 1}',
        "saved/variables/variables.data-00000-of-00001": os.urandom(70_001),
        "saved/empty": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_a_job_uploads_an_artifact_directory_and_an_init_container_fetches_it_byte_for_byte(tmp_path, env, s3):
    files = make_artifact(tmp_path / "trained")
    up = vigil_fetch(env, str(tmp_path / "trained"), f"s3://{BUCKET}/drift/v1")
    assert up.returncode == 0, up.stderr
    # the directory's contents land under the prefix, not under prefix/trained/
    assert keys(s3, "drift/v1/") == {f"drift/v1/{k}": v for k, v in files.items()}

    down = vigil_fetch(env, f"s3://{BUCKET}/drift/v1", str(tmp_path / "pod" / "models" / "drift"))
    assert down.returncode == 0, down.stderr
    assert tree(tmp_path / "pod" / "models" / "drift") == files
    assert sorted(p.name for p in (tmp_path / "pod" / "models").iterdir()) == ["drift"]  # no staging leftovers


def test_a_retrained_upload_replaces_the_old_artifact_whole(tmp_path, env, s3):
    make_artifact(tmp_path / "v1")
    assert vigil_fetch(env, str(tmp_path / "v1"), f"s3://{BUCKET}/drift/current").returncode == 0
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "model.joblib").write_bytes(b"retrained")
    up = vigil_fetch(env, str(tmp_path / "v2"), f"s3://{BUCKET}/drift/current")
    assert up.returncode == 0, up.stderr
    # v1's other files are gone from the bucket: a reader never mixes two trainings
    assert keys(s3, "drift/current/") == {"drift/current/model.joblib": b"retrained"}
    dest = tmp_path / "pod" / "drift"
    make_artifact(dest)  # what the pod had from before
    assert vigil_fetch(env, f"s3://{BUCKET}/drift/current", str(dest)).returncode == 0
    assert tree(dest) == {"model.joblib": b"retrained"}


def test_a_single_object_and_archives_on_s3(tmp_path, env, s3):
    blob = os.urandom(300_000)
    s3.put_object(Bucket=BUCKET, Key="models/model.joblib", Body=blob)
    tgz = io.BytesIO()
    tdata = {"saved/model.keras": os.urandom(50_000), "saved/config.json": b"{}"}
    with tarfile.open(fileobj=tgz, mode="w:gz") as t:
        for name, data in tdata.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key="models/model.tar.gz", Body=tgz.getvalue())
    zbuf = io.BytesIO()
    zdata = {"a/b.bin": os.urandom(20_000), "c.txt": b"zip"}
    with zipfile.ZipFile(zbuf, "w") as z:
        for name, data in zdata.items():
            z.writestr(name, data)
    s3.put_object(Bucket=BUCKET, Key="models/model.zip", Body=zbuf.getvalue())

    out = tmp_path / "pod"
    result = vigil_fetch(env, f"s3://{BUCKET}/models/model.joblib", str(out / "m.joblib"),
                         f"s3://{BUCKET}/models/model.tar.gz", str(out / "keras"),
                         f"s3://{BUCKET}/models/model.zip", str(out / "zipped"))
    assert result.returncode == 0, result.stderr
    assert (out / "m.joblib").read_bytes() == blob
    assert tree(out / "keras") == tdata
    assert tree(out / "zipped") == zdata
    assert sorted(p.name for p in out.iterdir()) == ["keras", "m.joblib", "zipped"]  # archives not left beside


@pytest.mark.parametrize("uri", [f"s3://{BUCKET}/no/such/model.joblib", f"s3://{BUCKET}/no-such-prefix",
                                 "s3://no-such-bucket-vigil/model.joblib"])
def test_a_missing_key_or_bucket_is_one_line_naming_the_uri(tmp_path, env, s3, uri):
    result = vigil_fetch(env, uri, str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreachable_endpoint_is_one_line_not_a_traceback(tmp_path, env):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_MAX_ATTEMPTS="1")
    uri = f"s3://{BUCKET}/model.joblib"
    result = vigil_fetch(env, uri, str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and f"127.0.0.1:{port}" in lines[0], result.stderr
