"""Where a monitor's plan runs in Kubernetes: the `Placement` that `vigil.plan.build_plan` asks.

- Every component listens on port 8080 in its own pod; its address is its Service,
  ``http://{monitor}-{component}.{namespace}.svc:8080``.
- **Artifacts per pod** (DESIGN §12). Each pod reads its files from its own volume,
  ``/mnt/vigil/data`` (an emptyDir, read-only to the component), which a ``fetch`` init
  container (`vigil fetch`) fills before the component starts, like KServe's storage
  initializer. A storage URI therefore has one in-pod path whatever its scheme,
  ``/mnt/vigil/data/<hash of the URI>/<name>`` (an archive, ``.tar.gz``/``.tgz``/``.zip``,
  is unpacked into a directory ``<name>`` without the suffix). Where the init container
  reads it from:

  ========================  ==================================================
  URI                       source of the init container
  ========================  ==================================================
  ``pvc://CLAIM/sub/path``  the claim, mounted read-only in the init container only
  ``file:///abs/path``      a hostPath, read-only (refused unless the operator
                            runs with ``--allow-host-path``)
  ``s3://``, ``gs://``,     fsspec (s3fs, gcsfs), credentials from the monitor's
  ``https://``              storage Secret
  ========================  ==================================================

- **Trained artifacts** (``storageUri`` null) are written by the detector's training Job
  to ``{artifactsUri}/{component}`` (``spec.storage.artifactsUri``) or, by default, the
  monitor's claim ``{monitor}-artifacts`` at ``pvc://{monitor}-artifacts/{component}``;
  the detector pods fetch them from there like any other URI.
- **Capture** (``write_uri``, ``spec.logger.capture``): ``pvc://CLAIM/sub`` is written at
  ``/mnt/vigil/capture/pvc/CLAIM/sub`` (the claim mounted writable in the logger pod, the only
  main container that mounts a user's claim: it writes there), ``file:///path`` at a writable
  hostPath (``--allow-host-path`` only), ``s3://``/``gs://`` directly by the logger (fsspec, the
  storage Secret's credentials).
- **State** (``state_dir``): a stateful detector (drift) keeps its checkpoints on a
  ReadWriteOnce claim of its own, ``{monitor}-{component}-state``, mounted only by that
  component's single pod at ``/mnt/vigil/state``.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Optional

PORT = 8080
MOUNT_ROOT = "/mnt/vigil"
DATA_DIR = f"{MOUNT_ROOT}/data"  # each pod's own copy of what it reads (emptyDir)
SOURCES_DIR = f"{MOUNT_ROOT}/sources"  # claims and host paths, in init containers only
OUT_DIR = f"{MOUNT_ROOT}/out"  # what a training Job wrote, before it is uploaded
STATE_DIR = f"{MOUNT_ROOT}/state"  # a stateful component's own claim
CAPTURE_DIR = f"{MOUNT_ROOT}/capture"  # where a component writes a claim or host path (capture)
REMOTE_SCHEMES = ("s3", "gs", "https", "http")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
#: Where trained artifacts may be uploaded (https has no standard upload).
ARTIFACT_SCHEMES = ("pvc", "s3", "gs")


def artifacts_claim(monitor: str) -> str:
    return f"{monitor}-artifacts"


def state_claim(monitor: str, component: str) -> str:
    return f"{monitor}-{component}-state"


def _digest(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def archive_suffix(name: str) -> Optional[str]:
    return next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)


@dataclass(frozen=True)
class Storage:
    """One storage URI, resolved for a pod."""

    uri: str
    scheme: str
    path: str  # where the component reads it (its pod's data volume)
    claim: Optional[str] = None  # pvc
    sub: str = ""  # pvc: the path inside the claim
    host_path: Optional[str] = None  # file
    archive: bool = False

    @property
    def remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES

    @property
    def source(self) -> str:
        """What the init container copies from: a path under its mounts, or the remote URI."""
        if self.claim:
            return claim_path(self.claim, self.sub)
        if self.host_path:
            return host_mount(self.host_path)
        return self.uri


def claim_path(claim: str, sub: str = "") -> str:
    base = f"{SOURCES_DIR}/pvc/{claim}"
    return f"{base}/{sub}".rstrip("/") if sub else base


def host_mount(host_path: str) -> str:
    return f"{SOURCES_DIR}/host/{_digest(host_path)}/{posixpath.basename(host_path) or 'root'}"


def write_claim_path(claim: str, sub: str = "") -> str:
    base = f"{CAPTURE_DIR}/pvc/{claim}"
    return f"{base}/{sub}".rstrip("/") if sub else base


def write_host_mount(host_path: str) -> str:
    return f"{CAPTURE_DIR}/host/{_digest(host_path)}/{posixpath.basename(host_path) or 'root'}"


def resolve(uri: str) -> Storage:
    """Map a storage URI to its in-pod path and source; ValueError if unusable."""
    if "://" not in uri:
        if uri.startswith("/"):
            uri = "file://" + uri
        else:
            raise ValueError(f"{uri!r} is a relative path; in Kubernetes use pvc://, s3://, gs:// or https://")
    scheme, rest = uri.split("://", 1)
    name = posixpath.basename(rest.split("?", 1)[0].rstrip("/")) or "data"
    suffix = archive_suffix(name)
    local = name[: -len(suffix)] if suffix else name
    path = f"{DATA_DIR}/{_digest(uri)}/{local or 'data'}"
    if scheme == "pvc":
        claim, _, sub = rest.partition("/")
        if not claim:
            raise ValueError(f"{uri!r} names no claim: use pvc://CLAIM/path")
        sub = posixpath.normpath(sub).lstrip("/") if sub else ""
        if sub.startswith(".."):
            raise ValueError(f"{uri!r} leaves its claim")
        return Storage(uri, scheme, path, claim=claim, sub="" if sub == "." else sub, archive=bool(suffix))
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"{uri!r} must be absolute: file:///path")
        return Storage(uri, scheme, path, host_path=posixpath.normpath(rest), archive=bool(suffix))
    if scheme in REMOTE_SCHEMES:
        return Storage(uri, scheme, path, archive=bool(suffix))
    raise ValueError(f"unsupported storage scheme {scheme!r}")


@dataclass
class KubePlacement:
    """`vigil.plan.Placement` for one monitor in one namespace."""

    monitor: str
    namespace: str
    artifacts_uri: Optional[str] = None  # spec.storage.artifactsUri; None: the monitor's own claim
    stateful: set[str] = field(default_factory=set)  # components that asked for a state_dir
    nats_url: Optional[str] = None  # the chart's NATS (OperatorConfig.nats_url), for jetstream monitors without url

    def transport_url(self) -> Optional[str]:
        return self.nats_url

    def port(self, component: str) -> int:
        return PORT

    def service_name(self, component: str) -> str:
        return f"{self.monitor}-{component}"

    def url(self, component: str) -> str:
        return f"http://{self.service_name(component)}.{self.namespace}.svc:{PORT}"

    def path(self, uri: str) -> str:
        return resolve(uri).path

    @property
    def artifacts_claim(self) -> Optional[str]:
        """The monitor's own artifacts claim, or None when artifacts go to spec.storage.artifactsUri."""
        return None if self.artifacts_uri else artifacts_claim(self.monitor)

    def artifact_uri(self, component: str) -> str:
        base = self.artifacts_uri.rstrip("/") if self.artifacts_uri else f"pvc://{artifacts_claim(self.monitor)}"
        return f"{base}/{component}"

    def write_uri(self, uri: str) -> str:
        s = resolve(uri)
        if s.claim:
            return write_claim_path(s.claim, s.sub)
        if s.host_path:
            return write_host_mount(s.host_path)
        return uri  # s3://, gs://: written by the component itself

    def state_dir(self, component: str) -> str:
        self.stateful.add(component)
        return STATE_DIR

    def state_claim(self, component: str) -> str:
        return state_claim(self.monitor, component)
