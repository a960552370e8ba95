"""The pod runner (tests/podrunner.py) isolates what it runs: a Job pod reports, from inside,
its uid/gid/groups, capabilities, pid namespace, which paths it may write, and what a
Service name resolves to and answers — a Deployment's pod on the same port 8080 as every
other pod, reached by its Service name. A ReadWriteOnce claim in two pods is a violation.
"""

from __future__ import annotations

import json

import pytest

from tests.operator_harness import cluster, eventually
from tests.podrunner import ROOT, PodRunner, available

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(available() is not None, reason=f"isolated pods: {available()}")]

UID = 65532
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
              "capabilities": {"drop": ["ALL"]}}
POD_SC = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID}

PROBE = r"""
import json, os, socket, urllib.request
def writable(p):
    try:
        open(os.path.join(p, ".probe"), "w").close(); return True
    except OSError as e:
        return e.strerror
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
report = {
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "pid": os.getpid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "caps": {k: status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")},
    "nnp": status["NoNewPrivs"].strip(),
    "root": writable("/usr"), "work": writable(os.environ["CODE"]), "tmp": writable("/tmp"),
    "config": writable("/etc/web"), "claim": writable("/mnt/vigil/claim"),
    "config_file": open("/etc/web/greeting").read(),
    "web_ip": socket.gethostbyname("web.default.svc"),
    "web": urllib.request.urlopen("http://web.default.svc:8080/greeting", timeout=10).read().decode(),
    "env": {k: os.environ.get(k) for k in ("FROM_CM", "FROM_SECRET", "POD", "LITERAL", "HOME")},
}
open("/mnt/vigil/claim/report.json", "w").write(json.dumps(report))
"""


def obj(kind: str, api: str, name: str, **rest) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "default",
                                                         **rest.pop("metadata", {})}, **rest}


def pod_spec(containers: list, volumes: list) -> dict:
    return {"securityContext": POD_SC, "containers": containers, "volumes": [{"name": "tmp", "emptyDir": {}},
                                                                               *volumes]}


async def post(c, path: str, doc: dict) -> None:
    await c._call("POST", path, doc)


async def test_a_pod_is_isolated_and_reaches_a_service_by_name(tmp_path):
    web_labels = {"app": "web"}
    async with cluster(tmp_path) as c, PodRunner(c.emu, tmp_path / "pods") as runner:
        await post(c, "/api/v1/namespaces/default/configmaps",
                   obj("ConfigMap", "v1", "web", data={"greeting": "hello from a volume", "FROM_CM": "cm"}))
        await post(c, "/api/v1/namespaces/default/secrets",
                   obj("Secret", "v1", "creds", stringData={"FROM_SECRET": "s3cret"}))
        await post(c, "/api/v1/namespaces/default/services",
                   obj("Service", "v1", "web", spec={"selector": web_labels, "ports": [{"port": 8080}]}))
        await post(c, "/api/v1/namespaces/default/persistentvolumeclaims",
                   obj("PersistentVolumeClaim", "v1", "state", spec={"accessModes": ["ReadWriteOnce"],
                                                                     "resources": {"requests": {"storage": "1Gi"}}}))
        web = {"name": "web", "image": "x", "securityContext": RESTRICTED,
               "command": ["python", "-m", "http.server", "8080", "--directory", "/etc/web"],
               "ports": [{"name": "http", "containerPort": 8080}],
               "readinessProbe": {"httpGet": {"path": "/greeting", "port": "http"}},
               "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                {"name": "config", "mountPath": "/etc/web", "readOnly": True}]}
        await post(c, "/apis/apps/v1/namespaces/default/deployments", obj(
            "Deployment", "apps/v1", "web", spec={"selector": {"matchLabels": web_labels}, "template": {
                "metadata": {"labels": web_labels},
                "spec": pod_spec([web], [{"name": "config", "configMap": {"name": "web"}}])}}))
        await eventually(lambda: (c.emu.get("apps/v1/deployments", "default", "web").get("status") or {})
                         .get("availableReplicas") == 1, timeout=30, what="web ready")

        probe = {"name": "probe", "image": "x", "securityContext": RESTRICTED,
                 "command": ["python", "-c", PROBE],
                 "envFrom": [{"configMapRef": {"name": "web"}}, {"secretRef": {"name": "creds"}},
                             {"secretRef": {"name": "absent", "optional": True}}],
                 "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "LITERAL", "value": "v"}, {"name": "HOME", "value": "/tmp"},
                         {"name": "CODE", "value": str(ROOT)}],
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                  {"name": "config", "mountPath": "/etc/web", "readOnly": True},
                                  {"name": "state", "mountPath": "/mnt/vigil/claim"}]}
        job_spec = pod_spec([probe], [{"name": "config", "configMap": {"name": "web"}},
                                      {"name": "state", "persistentVolumeClaim": {"claimName": "state"}}])
        job_spec["restartPolicy"] = "Never"
        await post(c, "/apis/batch/v1/namespaces/default/jobs",
                   obj("Job", "batch/v1", "probe", spec={"template": {"spec": job_spec}}))
        await eventually(lambda: "probe" in runner.finished, timeout=60, what="probe Job finished")
        assert runner.finished["probe"] == 0, runner.crashes
        job = c.emu.get("batch/v1/jobs", "default", "probe")
        assert job["status"]["conditions"][0]["type"] == "Complete"
        report = json.loads((runner.claim_dir("default", "state") / "report.json").read_text())

        assert (report["uid"], report["gid"], report["groups"]) == (UID, UID, [UID])
        assert set(report["caps"].values()) == {"0000000000000000"}, report["caps"]  # none at all
        assert report["nnp"] == "1"
        assert report["pid"] == 1 and report["pids"] == [1]  # its own pid namespace
        assert report["root"] == report["work"] == "Read-only file system"
        assert report["config"] == "Read-only file system"  # readOnly: true
        assert report["tmp"] is True and report["claim"] is True
        assert report["config_file"] == "hello from a volume"
        assert report["web_ip"] == runner.address("default", "web")
        assert report["web"] == "hello from a volume"  # the Service name, port 8080, in another pod
        assert report["env"]["FROM_CM"] == "cm" and report["env"]["FROM_SECRET"] == "s3cret"
        assert report["env"]["POD"].startswith("probe-") and report["env"]["LITERAL"] == "v"
        assert not runner.violations and not runner.crashes

        # a second pod on the same ReadWriteOnce claim: recorded as a Multi-Attach
        web2 = json.loads(json.dumps(web))
        web2["volumeMounts"].append({"name": "state", "mountPath": "/mnt/vigil/claim"})
        await post(c, "/apis/apps/v1/namespaces/default/deployments", obj(
            "Deployment", "apps/v1", "web2", spec={"selector": {"matchLabels": {"app": "web2"}}, "template": {
                "metadata": {"labels": {"app": "web2"}},
                "spec": pod_spec([web2], [{"name": "config", "configMap": {"name": "web"}},
                                          {"name": "state", "persistentVolumeClaim": {"claimName": "state"}}])}}))
        await post(c, "/apis/apps/v1/namespaces/default/deployments", obj(
            "Deployment", "apps/v1", "web3", spec={"selector": {"matchLabels": {"app": "web3"}}, "template": {
                "metadata": {"labels": {"app": "web3"}},
                "spec": pod_spec([web2], [{"name": "config", "configMap": {"name": "web"}},
                                          {"name": "state", "persistentVolumeClaim": {"claimName": "state"}}])}}))
        violations = await eventually(lambda: runner.violations, timeout=30, what="a Multi-Attach violation")
        assert "ReadWriteOnce claim default/state" in violations[0]
