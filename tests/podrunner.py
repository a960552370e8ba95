"""A kubelet for tests: every pod the operator renders, run on this machine as isolated
local processes, against the API emulator of `tests/kubeemu.py` (DESIGN §12 "Tested as pods").

`PodRunner` watches the emulator's Deployments and Jobs (every namespace) and does what the
deployment controller, the job controller and a kubelet would do:

- **Each container** runs with the manifest's exact ``command`` (and ``args``), its ``env``
  (``value``, ``fieldRef`` metadata.name/namespace, ``configMapKeyRef``, ``secretKeyRef``)
  over its ``envFrom`` ConfigMaps and Secrets (``optional`` honoured: a missing required
  one keeps the pod pending), over the image's environment (`IMAGE_ENV`: this checkout and
  its venv stand in for the images, which carry the same package).
- **Isolation**, per container: ``unshare --mount --pid --fork --mount-proc`` (a private
  mount and pid namespace; the container is pid 1's child, killed with it), in which
  `container_main` (this module run as a script, as root) binds the pod's volumes at
  their ``mountPath``\\ s (``readOnly`` honoured), makes every other mount read-only when
  ``readOnlyRootFilesystem`` is set (the host's ``/``, ``/work``… as the image's root;
  ``/dev`` and ``/proc`` stay as a container runtime leaves them), binds a private
  ``/etc/hosts``, then ``setpriv`` s to the pod's ``runAsUser``/``runAsGroup`` with its
  ``fsGroup`` as the only supplementary group, no capabilities (inheritable, ambient and
  bounding sets cleared) and ``no_new_privs``, and execs the command.
- **Network**, per pod: a network namespace of its own (``ip netns``) with a veth on a
  bridge private to the runner (a random ``10.x.y.0/24``), so every pod listens on its
  ``containerPort`` (8080 for all of them, as in a cluster) at a pod IP of its own, and no
  port is remapped. Service names (``name``, ``name.ns``, ``name.ns.svc``,
  ``name.ns.svc.cluster.local``) resolve through the private ``/etc/hosts`` to the IP of the
  pod the Service's selector matches (rewritten in place as Services and pods come and
  go). The test process reaches pods at their IPs over the bridge (`address`).
- **Volumes**: ``emptyDir`` a fresh directory per pod (mode 0777, as the kubelet makes it);
  ``persistentVolumeClaim`` one directory per claim (the "volume"), group-owned by the pod's
  ``fsGroup`` (setgid, group-writable) — the claim must exist in the emulator, and a
  ReadWriteOnce claim mounted by two pods at once is recorded in `violations` (a
  Multi-Attach error on a multi-node cluster); ``configMap``/``secret`` the object's keys
  as files; ``hostPath`` the host path itself.
- **Order**: init containers one after the other, each to success, then the main
  containers. A Deployment's pod is ready when its readiness probe (``httpGet``) answers
  2xx; the runner then writes the Deployment's status as the deployment controller would
  (`tests.operator_harness.Cluster.rollout`), and marks it unavailable again when the
  probe fails or the container exits. A changed pod template replaces the pod
  (stop, then start: every Deployment runs one pod here, whatever ``replicas`` says). A
  Job's pod runs to completion and the Job is marked Complete, or Failed on a non-zero
  exit (no retries: ``backoffLimit`` is not emulated). A main container that exits is
  recorded in `crashes` (no restarts).

Every isolation feature above is real on this machine (root in a container with
CAP_SYS_ADMIN and CAP_NET_ADMIN); `available()` says why not where it is not, and tests
skip only then. What is not emulated: resource limits (no cgroups), liveness and startup
probes, seccomp profiles, more than one replica, image pulls.

Teardown stops every pod and deletes its network namespace and the bridge. If the test
process is killed instead, its containers die with it (``setpriv --pdeathsig`` on
``unshare --kill-child``), but the bridge ``vgbr<id>`` and namespaces ``vg<id>p<n>`` stay
until ``ip link del`` / ``ip netns del``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent
#: The images' environment: this checkout (and its venv) is what the images carry.
IMAGE_ENV = {
    "PATH": f"{VENV}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}:{ROOT / 'detectors'}",
    "PYTHONUNBUFFERED": "1",
    "LANG": "C.UTF-8",
}
#: Where the "image" lives on this machine (checkout, venv, interpreter): a volume mounted at one of
#: their ancestors (an emptyDir at /tmp, with a checkout under /tmp) must not hide them — in a
#: real pod the image's files are not under the pod's volumes — so they are bound back over it.
IMAGE_PATHS = sorted({str(ROOT), str(VENV.parent), sys.base_prefix})
#: Mounts a container runtime leaves writable under a read-only root filesystem.
RUNTIME_WRITABLE = ("/dev", "/proc")
DEPLOYMENTS, JOBS = "apps/v1/deployments", "batch/v1/jobs"
SERVICES, CLAIMS = "v1/services", "v1/persistentvolumeclaims"


def available() -> Optional[str]:
    """None when this machine can run isolated pods, else the reason it cannot."""
    for tool in ("unshare", "setpriv", "ip", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "not root: mount and network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
    probe = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare refused: {probe.stderr.strip()}"
    return None


def _sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


def _matches(labels: dict, selector: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Pod:
    name: str
    namespace: str
    owner: tuple[str, str]  # (resource, name) of the Deployment or Job
    template: dict
    ip: str
    netns: str
    veth: str
    dir: Path
    digest: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    task: Optional[asyncio.Task] = None
    ready: bool = False
    was_ready: bool = False
    done: Optional[int] = None  # a Job pod's exit code
    claims: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict:
        return (self.template.get("metadata") or {}).get("labels") or {}


class PodRunner:
    """Runs the emulator's Deployments and Jobs as isolated processes (module docstring)."""

    def __init__(self, emu, workdir: Path, interval: float = 0.2):
        self.emu, self.workdir, self.interval = emu, Path(workdir), interval
        self.id = f"{random.randrange(16 ** 4):04x}"
        self.bridge = f"vgbr{self.id}"
        self.subnet = self._pick_subnet()
        self.pods: dict[tuple[str, str, str], Pod] = {}  # (resource, namespace, owner name) -> pod
        self.addresses: dict[tuple[str, str], str] = {}  # (namespace, owner name) -> pod IP
        self.violations: list[str] = []
        self.crashes: list[str] = []
        self.finished: dict[str, int] = {}  # Job name -> exit code
        self.ran: list[dict] = []  # every container started: pod, container, uid, gid, readOnlyRoot, argv
        self.hosts = self.workdir / "hosts"
        self._n = 0
        self._task: Optional[asyncio.Task] = None

    # -- network ------------------------------------------------------------------------------

    @staticmethod
    def _pick_subnet() -> str:
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        while True:
            subnet = f"10.{random.randrange(64, 250)}.{random.randrange(0, 250)}"
            if f"{subnet}." not in routes:
                return subnet

    def address(self, namespace: str, owner: str) -> str:
        """The pod IP the pod of Deployment (or Job) `owner` gets (allocated on first ask)."""
        key = (namespace, owner)
        if key not in self.addresses:
            n = len(self.addresses) + 2
            assert n < 250, "too many pods for one /24"
            self.addresses[key] = f"{self.subnet}.{n}"
        return self.addresses[key]

    def url(self, namespace: str, owner: str, port: int = 8080) -> str:
        return f"http://{self.address(namespace, owner)}:{port}"

    def _net_up(self) -> None:
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")

    def _net_down(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def _pod_net(self, pod: Pod) -> None:
        _sh("ip", "netns", "add", pod.netns)
        _sh("ip", "link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        _sh("ip", "link", "set", pod.veth, "master", self.bridge, "up")
        _sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
        _sh("ip", "-n", pod.netns, "link", "set", "eth0", "up")
        _sh("ip", "-n", pod.netns, "link", "set", "lo", "up")

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for svc in self.emu.list(SERVICES):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            selector = (svc.get("spec") or {}).get("selector") or {}
            pod = next((p for p in self.pods.values() if p.namespace == ns and _matches(p.labels, selector)), None)
            if pod is not None:
                lines.append(f"{pod.ip}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns} {name}")
        text = "\n".join(lines) + "\n"
        if not self.hosts.exists() or self.hosts.read_text() != text:
            with open(self.hosts, "r+" if self.hosts.exists() else "w") as f:  # in place: bound into pods
                f.seek(0)
                f.write(text)
                f.truncate()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> PodRunner:
        reason = available()
        if reason:
            raise RuntimeError(f"cannot run isolated pods here: {reason}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_hosts()
        self._net_up()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key in list(self.pods):
            await self._stop(key)
        self._net_down()

    async def _loop(self) -> None:
        while True:
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a harness fault must fail the test, not hang it
                self.violations.append(f"pod runner error: {e!r}")
            await asyncio.sleep(self.interval)

    async def _sync(self) -> None:
        wanted: dict[tuple[str, str, str], dict] = {}
        for dep in self.emu.list(DEPLOYMENTS):
            if dep["spec"].get("replicas", 1) != 0:
                wanted[(DEPLOYMENTS, dep["metadata"]["namespace"], dep["metadata"]["name"])] = dep
        for job in self.emu.list(JOBS):
            wanted[(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])] = job
        for key, pod in list(self.pods.items()):
            obj = wanted.get(key)
            if obj is None or (key[0] == DEPLOYMENTS and _digest(obj["spec"]["template"]) != pod.digest):
                await self._stop(key)
        for key, obj in wanted.items():
            if key not in self.pods and not (key[0] == JOBS and key[2] in self.finished):
                self._start(key, obj)
        self._write_hosts()
        for key, pod in self.pods.items():
            if key[0] == DEPLOYMENTS and (pod.ready or pod.was_ready):
                # available once its pod is ready; unavailable again if that pod stops being ready
                dep = wanted[key]
                status = dep.get("status") or {}
                n = dep["spec"].get("replicas", 1)
                available = n if pod.ready else 0
                if status.get("observedGeneration") != dep["metadata"].get("generation") or \
                        status.get("availableReplicas") != available:
                    await self.emu.set_status(DEPLOYMENTS, key[1], key[2], {
                        "observedGeneration": dep["metadata"]["generation"], "replicas": n,
                        "updatedReplicas": n, "readyReplicas": available, "availableReplicas": available})
                pod.was_ready = pod.was_ready or pod.ready
            if key[0] == JOBS and pod.done is not None and key[2] not in self.finished:
                self.finished[key[2]] = pod.done
                cond = {"type": "Complete", "status": "True"} if pod.done == 0 else \
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": f"pod {pod.name} exited {pod.done}"}
                await self.emu.set_status(JOBS, key[1], key[2], {
                    **({"succeeded": 1} if pod.done == 0 else {"failed": 1}), "conditions": [cond]})

    def _start(self, key: tuple[str, str, str], obj: dict) -> None:
        resource, namespace, owner = key
        self._n += 1
        template = copy.deepcopy(obj["spec"]["template"])
        suffix = f"{random.randrange(16 ** 5):05x}"
        name = f"{owner}-{suffix}" if resource == JOBS else f"{owner}-{_digest(template)[:5]}-{suffix}"
        pod = Pod(name=name, namespace=namespace, owner=(resource, owner), template=template,
                  ip=self.address(namespace, owner), netns=f"vg{self.id}p{self._n}", veth=f"vg{self.id}v{self._n}",
                  dir=self.workdir / "pods" / name, digest=_digest(template))
        self.pods[key] = pod
        pod.task = asyncio.create_task(self._run_pod(pod))

    async def _stop(self, key) -> None:
        pod = self.pods.pop(key)
        if pod.task:
            pod.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pod.task
        for proc in pod.procs.values():
            _kill(proc)
        subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True)

    # -- one pod ------------------------------------------------------------------------------

    async def _run_pod(self, pod: Pod) -> None:
        spec = pod.template["spec"]
        pod.dir.mkdir(parents=True)
        volumes = await self._volumes(pod)
        self._pod_net(pod)
        for ctr in spec.get("initContainers") or []:
            code = await self._run_to_end(pod, ctr, volumes)
            if code != 0:
                self._failed(pod, ctr, code)
                return
        for ctr in spec["containers"]:
            pod.procs[ctr["name"]] = await self._launch(pod, ctr, volumes)
        if pod.owner[0] == JOBS:
            codes = [await asyncio.to_thread(p.wait) for p in pod.procs.values()]
            bad = next(((c, code) for c, code in zip(spec["containers"], codes, strict=True) if code), None)
            if bad:
                self._failed(pod, *bad)
            else:
                pod.done = 0
            return
        await self._probe_ready(pod)

    def _failed(self, pod: Pod, ctr: dict, code: int) -> None:
        log = self._log_path(pod, ctr).read_text(errors="replace")[-3000:]
        message = f"{pod.name}/{ctr['name']} exited {code}:\n{log}"
        if pod.owner[0] == JOBS:
            pod.done = code or 1
        self.crashes.append(message)

    async def _probe_ready(self, pod: Pod) -> None:
        """The readiness probe (``httpGet``): ready on a 2xx/3xx answer, unready after
        ``failureThreshold`` failures in a row, every ``periodSeconds`` (at most 1 s here)."""
        import httpx

        ctr = pod.template["spec"]["containers"][0]
        probe = ctr.get("readinessProbe") or {}
        get = probe.get("httpGet")
        failures = 0
        async with httpx.AsyncClient(timeout=float(probe.get("timeoutSeconds", 1))) as http:
            while True:
                for cname, proc in pod.procs.items():
                    if proc.poll() is not None:
                        c = next(x for x in pod.template["spec"]["containers"] if x["name"] == cname)
                        self._failed(pod, c, proc.returncode)
                        pod.ready = False
                        return
                if get is None:
                    pod.ready = True
                else:
                    try:
                        r = await http.get(f"http://{pod.ip}:{_port(ctr, get['port'])}{get['path']}")
                        ok = 200 <= r.status_code < 400
                    except httpx.HTTPError:
                        ok = False
                    failures = 0 if ok else failures + 1
                    if ok:
                        pod.ready = True
                    elif failures >= probe.get("failureThreshold", 3):
                        pod.ready = False
                await asyncio.sleep(min(float(probe.get("periodSeconds", 10)), 1.0) if pod.ready else 0.3)

    async def _run_to_end(self, pod: Pod, ctr: dict, volumes: dict) -> int:
        proc = await self._launch(pod, ctr, volumes)
        pod.procs[ctr["name"]] = proc
        try:
            return await asyncio.to_thread(proc.wait)
        finally:
            pod.procs.pop(ctr["name"], None)

    def _log_path(self, pod: Pod, ctr: dict) -> Path:
        return pod.dir / f"{ctr['name']}.log"

    def logs(self, owner: str, container: Optional[str] = None) -> str:
        """What the pod of `owner` (Deployment or Job name) printed, one container or all."""
        out = []
        for pod in self.pods.values():
            if pod.owner[1] == owner:
                out += [p.read_text(errors="replace") for p in sorted(pod.dir.glob("*.log"))
                        if container is None or p.stem == container]
        return "\n".join(out)

    async def _launch(self, pod: Pod, ctr: dict, volumes: dict) -> subprocess.Popen:
        spec = pod.template["spec"]
        psc, csc = spec.get("securityContext") or {}, ctr.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", 0))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
        groups = [g for g in [psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g is not None]
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
            raise RuntimeError(f"{pod.name}/{ctr['name']}: runAsNonRoot without a non-zero runAsUser")
        mounts = []
        for m in ctr.get("volumeMounts") or []:
            src = volumes[m["name"]]
            if m.get("subPath"):
                src = src / m["subPath"]
            mounts.append({"source": str(src), "target": m["mountPath"], "readOnly": bool(m.get("readOnly")),
                           "file": src.is_file()})
        argv = [*(ctr.get("command") or []), *(ctr.get("args") or [])]
        if not argv:
            raise RuntimeError(f"{pod.name}/{ctr['name']}: no command (the image's entrypoint is not emulated)")
        config = {"argv": argv, "env": await self._env(pod, ctr), "uid": uid, "gid": gid, "groups": groups,
                  "mounts": mounts, "hosts": str(self.hosts), "readOnlyRoot": bool(csc.get("readOnlyRootFilesystem")),
                  "workingDir": ctr.get("workingDir") or "/", "scratch": str(pod.dir / f"{ctr['name']}.root"),
                  "imagePaths": IMAGE_PATHS}
        self.ran.append({"pod": pod.name, "container": ctr["name"], "uid": uid, "gid": gid,
                         "readOnlyRoot": config["readOnlyRoot"], "argv": argv})
        config_path = pod.dir / f"{ctr['name']}.json"
        config_path.write_text(json.dumps(config))
        log = open(self._log_path(pod, ctr), "ab")
        # --pdeathsig: if the test process dies, unshare dies and --kill-child takes the container along
        cmd = ["setpriv", "--pdeathsig", "KILL", "nsenter", f"--net=/run/netns/{pod.netns}", "--",
               "unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--",
               sys.executable, "-S", str(Path(__file__).resolve()), str(config_path)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, start_new_session=True)
        log.close()
        return proc

    async def _env(self, pod: Pod, ctr: dict) -> dict[str, str]:
        env = dict(IMAGE_ENV)
        for src in ctr.get("envFrom") or []:
            ref = src.get("configMapRef") or src.get("secretRef")
            kind = "configmaps" if "configMapRef" in src else "secrets"
            data = await self._wait_object(pod, kind, ref["name"], ref.get("optional", False))
            env.update({src.get("prefix", "") + k: v for k, v in data.items()})
        for item in ctr.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            frm = item.get("valueFrom") or {}
            if "fieldRef" in frm:
                env[item["name"]] = {"metadata.name": pod.name, "metadata.namespace": pod.namespace,
                                     "status.podIP": pod.ip}[frm["fieldRef"]["fieldPath"]]
            else:
                ref = frm.get("configMapKeyRef") or frm["secretKeyRef"]
                kind = "configmaps" if "configMapKeyRef" in frm else "secrets"
                data = await self._wait_object(pod, kind, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[item["name"]] = data[ref["key"]]
        return env

    async def _wait_object(self, pod: Pod, kind: str, name: str, optional: bool) -> dict:
        """A ConfigMap's or Secret's data (Secrets decoded); a pod waits for a required one."""
        import base64

        while True:
            obj = self.emu.get(f"v1/{kind}", pod.namespace, name)
            if obj is not None:
                if kind == "secrets":
                    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
                    return {**data, **(obj.get("stringData") or {})}
                return dict(obj.get("data") or {})
            if optional:
                return {}
            await asyncio.sleep(self.interval)

    async def _volumes(self, pod: Pod) -> dict[str, Path]:
        spec = pod.template["spec"]
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        out: dict[str, Path] = {}
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            if "emptyDir" in vol:
                path = pod.dir / "volumes" / name
                path.mkdir(parents=True)
                path.chmod(0o777)
            elif "persistentVolumeClaim" in vol:
                claim_name = vol["persistentVolumeClaim"]["claimName"]
                claim = await self._wait_claim(pod, claim_name)
                key = f"{pod.namespace}/{claim_name}"
                if "ReadWriteOnce" in (claim.get("spec") or {}).get("accessModes", []):
                    others = [p.name for p in self.pods.values() if p is not pod and p.done is None and key in p.claims]
                    if others:
                        self.violations.append(f"ReadWriteOnce claim {key} mounted by {pod.name} while "
                                               f"{', '.join(others)} mounts it (Multi-Attach across nodes)")
                pod.claims.append(key)
                path = self.claim_dir(pod.namespace, claim_name)
                path.mkdir(parents=True, exist_ok=True)
                if fs_group is not None:
                    _chgrp_tree(path, fs_group)
            elif "configMap" in vol or "secret" in vol:
                kind, ref = ("configmaps", vol["configMap"]) if "configMap" in vol else ("secrets", vol["secret"])
                data = await self._wait_object(pod, kind, ref.get("name") or ref.get("secretName"),
                                               ref.get("optional", False))
                path = pod.dir / "volumes" / name
                path.mkdir(parents=True)
                for k, v in data.items():
                    (path / k).write_text(v)
                path.chmod(0o755)
            elif "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
            else:
                raise RuntimeError(f"{pod.name}: volume {name} of a kind the pod runner does not emulate: {vol}")
            out[name] = path
        return out

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The directory holding a claim's volume (a test puts a user's files there)."""
        return self.workdir / "claims" / namespace / claim

    async def _wait_claim(self, pod: Pod, name: str) -> dict:
        while True:
            claim = self.emu.get(CLAIMS, pod.namespace, name)
            if claim is not None:
                return claim
            await asyncio.sleep(self.interval)  # Pending: the claim does not exist (yet)


def _port(ctr: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in ctr.get("ports") or [] if p.get("name") == port)


def _chgrp_tree(path: Path, gid: int) -> None:
    """What the kubelet does for fsGroup on a claim: group-owned, group-writable, setgid dirs."""
    for p in [path, *path.rglob("*")]:
        os.chown(p, -1, gid)
        mode = p.stat().st_mode
        p.chmod(mode | 0o060 | (0o2010 if p.is_dir() else 0))


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()


# ----------------------------------------------------------------------------- inside the namespaces

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


def _mount(source: str, target: str, fstype: str = "", flags: int = 0, data: str = "") -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"pod runner: mount {source} on {target} ({flags:#x}): {os.strerror(err)}")


def _read_only(target: str) -> None:
    # MS_BIND: only this namespace's view of the mount turns read-only, never the filesystem
    _mount("none", target, flags=MS_REMOUNT | MS_BIND | MS_RDONLY)


def _mountpoints() -> list[str]:
    return [line.split()[4].encode().decode("unicode_escape")
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def container_main(config_path: str) -> None:
    """As root inside fresh mount and pid namespaces (and the pod's network namespace): build
    the container's filesystem view, drop to the pod's identity, exec the command."""
    config = json.loads(Path(config_path).read_text())
    _mount("none", "/", flags=MS_REC | MS_PRIVATE)
    mounts = sorted(config["mounts"], key=lambda m: m["target"].count("/"))
    # Sources opened first: a volume bound at /tmp must not hide another one's source under /tmp.
    fds = {m["target"]: os.open(m["source"], os.O_PATH) for m in mounts}
    hosts_fd = os.open(config["hosts"], os.O_PATH)
    image_fds = {p: os.open(p, os.O_PATH) for p in config.get("imagePaths", [])}
    covered: list[str] = []  # overlays where a mountPath had to be made

    def ensure(target: str, is_file: bool) -> None:
        """Make a missing mountPath as a container runtime would in the image's root: here on an
        overlay of its nearest existing ancestor (upper layer in the pod's scratch directory),
        which keeps the ancestor's contents and leaves the host's filesystem untouched."""
        t = Path(target)
        if t.exists():
            return
        ancestor = t.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not any(str(ancestor) == c or str(ancestor).startswith(c + "/") for c in covered):
            if str(ancestor) == "/":
                raise SystemExit(f"pod runner: {target} has no ancestor to overlay but /")
            layer = Path(config["scratch"]) / str(len(covered))
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            _mount("overlay", str(ancestor), "overlay", 0,
                   f"lowerdir={ancestor},upperdir={layer / 'upper'},workdir={layer / 'work'}")
            covered.append(str(ancestor))
        if is_file:
            t.parent.mkdir(parents=True, exist_ok=True)
            t.touch()
        else:
            t.mkdir(parents=True, exist_ok=True)

    for m in mounts:
        ensure(m["target"], m["file"])
        _mount(f"/proc/self/fd/{fds[m['target']]}", m["target"], flags=MS_BIND)
        if m["readOnly"]:
            _read_only(m["target"])
    targets = [m["target"] for m in mounts]
    for path, fd in image_fds.items():  # the image's own files, back over a volume that hid them
        if any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets):
            Path(path).mkdir(parents=True, exist_ok=True)  # an empty mount point in that volume
            _mount(f"/proc/self/fd/{fd}", path, flags=MS_BIND)
    _mount(f"/proc/self/fd/{hosts_fd}", "/etc/hosts", flags=MS_BIND)
    _read_only("/etc/hosts")
    for fd in [*fds.values(), hosts_fd, *image_fds.values()]:
        os.close(fd)
    if config["readOnlyRoot"]:
        volumes = {m["target"] for m in mounts} | {"/etc/hosts"}
        points = _mountpoints()
        for i, point in enumerate(points):
            if point in volumes or any(point == w or point.startswith(w + "/") for w in RUNTIME_WRITABLE):
                continue
            if any(later == point or point.startswith(later.rstrip("/") + "/") for later in points[i + 1:]):
                continue  # hidden (or re-mounted) by a later mount at or above it
            _read_only(point)
    os.chdir(config["workingDir"])
    setpriv = ["setpriv", f"--reuid={config['uid']}", f"--regid={config['gid']}",
               f"--groups={','.join(map(str, config['groups']))}" if config["groups"] else "--clear-groups",
               "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    os.execvpe("setpriv", [*setpriv, *config["argv"]], config["env"])


if __name__ == "__main__":
    container_main(sys.argv[1])
