"""Where a monitor's plan runs in Kubernetes: the `Placement` that `vigil.plan.build_plan` asks.

- Every component listens on port 8080 in its own pod; its address is its Service,
  ``http://{monitor}-{component}.{namespace}.svc:8080``.
- A storage URI becomes a path under ``/mnt/vigil`` inside the pod, and a volume that
  puts the file there (`vigil_operator.manifests` renders the volumes):

  ========================  ==========================================  =====================
  URI                       path in the pod                             volume
  ========================  ==========================================  =====================
  ``pvc://CLAIM/sub/path``  ``/mnt/vigil/pvc/CLAIM/sub/path``           the claim, read-only
  ``file:///abs/path``      ``/mnt/vigil/host/abs/path``                hostPath (for kind)
  ``s3://``, ``gs://``,     ``/mnt/vigil/fetch/<hash>/<basename>``      emptyDir, filled by an
  ``http(s)://``                                                        init container
  ========================  ==========================================  =====================

- Detectors Vigil trains (``storageUri`` null) are written by a training Job to the
  monitor's own PVC ``{monitor}-artifacts`` (owned by the monitor, so deleting the monitor
  deletes it) at ``pvc://{monitor}-artifacts/{component}``; the drift detector's window
  checkpoints go to the same claim under ``state/drift`` so they survive pod restarts.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Optional

PORT = 8080
MOUNT_ROOT = "/mnt/vigil"
REMOTE_SCHEMES = ("s3", "gs", "https", "http")


def artifacts_claim(monitor: str) -> str:
    return f"{monitor}-artifacts"


@dataclass(frozen=True)
class Storage:
    """One storage URI, resolved for a pod."""

    uri: str
    scheme: str
    path: str  # where the pod reads it
    claim: Optional[str] = None  # pvc
    host_path: Optional[str] = None  # file
    fetch_dir: Optional[str] = None  # remote: the directory the init container fills

    @property
    def remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES


def resolve(uri: str) -> Storage:
    """Map a storage URI to its in-pod path and volume source; ValueError if unusable."""
    if "://" not in uri:
        if uri.startswith("/"):
            uri = "file://" + uri
        else:
            raise ValueError(f"{uri!r} is a relative path; in Kubernetes use pvc://, file:///, s3://, gs:// or https://")
    scheme, rest = uri.split("://", 1)
    if scheme == "pvc":
        claim, _, sub = rest.partition("/")
        if not claim:
            raise ValueError(f"{uri!r} names no claim: use pvc://CLAIM/path")
        base = f"{MOUNT_ROOT}/pvc/{claim}"
        return Storage(uri, scheme, f"{base}/{sub}".rstrip("/") if sub else base, claim=claim)
    if scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"{uri!r} must be absolute: file:///path")
        host = posixpath.normpath(rest)
        return Storage(uri, scheme, f"{MOUNT_ROOT}/host{host}", host_path=host)
    if scheme in REMOTE_SCHEMES:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:10]
        base = posixpath.basename(rest.split("?", 1)[0].rstrip("/")) or "data"
        fetch_dir = f"{MOUNT_ROOT}/fetch/{digest}"
        return Storage(uri, scheme, f"{fetch_dir}/{base}", fetch_dir=fetch_dir)
    raise ValueError(f"unsupported storage scheme {scheme!r}")


@dataclass
class KubePlacement:
    """`vigil.plan.Placement` for one monitor in one namespace."""

    monitor: str
    namespace: str
    stateful: set[str] = field(default_factory=set)  # components that asked for a state_dir

    def port(self, component: str) -> int:
        return PORT

    def service_name(self, component: str) -> str:
        return f"{self.monitor}-{component}"

    def url(self, component: str) -> str:
        return f"http://{self.service_name(component)}.{self.namespace}.svc:{PORT}"

    def path(self, uri: str) -> str:
        return resolve(uri).path

    @property
    def artifacts_claim(self) -> str:
        return artifacts_claim(self.monitor)

    def artifact_uri(self, component: str) -> str:
        return f"pvc://{self.artifacts_claim}/{component}"

    def state_dir(self, component: str) -> str:
        self.stateful.add(component)
        return f"{MOUNT_ROOT}/pvc/{self.artifacts_claim}/state/{component}"
