"""A small async Kubernetes client for the kinds the operator manages.

Authentication, TLS and kubeconfig/in-cluster loading are the official `kubernetes`
client's (its `ApiClient` does the HTTP); this module only knows the REST paths of the
few kinds Vigil creates and runs the blocking calls in threads so kopf's event loop
never waits on them. Errors come back as `ApiError` with the HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Optional
from urllib.parse import quote

import kubernetes

#: kind -> (API prefix, plural)
ROUTES = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
}

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def load_api_client() -> kubernetes.client.ApiClient:
    """In-cluster service account if there is one, else the kubeconfig (``$KUBECONFIG``)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # $KUBECONFIG read now, not when `kubernetes` was imported (its default is fixed at import).
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None,
                                           client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration=configuration)


def path(kind: str, namespace: str, name: Optional[str] = None) -> str:
    prefix, plural = ROUTES[kind]
    out = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{out}/{quote(name)}" if name else out


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient, timeout: float = 30.0):
        self.api = api_client
        self.timeout = timeout

    def _call(self, method: str, url: str, body: Any = None, query: Optional[list] = None,
              content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self.api.param_serialize(method, url, query_params=query or [], header_params=headers,
                                           body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=self.timeout)
        raw = response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if not 200 <= response.status <= 299:
            status = data if isinstance(data, dict) else {}
            raise ApiError(response.status, status.get("reason") or response.reason or "",
                           status.get("message") or (raw or b"").decode(errors="replace")[:500])
        return data

    async def request(self, method: str, url: str, **kwargs) -> Any:
        return await asyncio.to_thread(self._call, method, url, **kwargs)

    async def get(self, kind: str, namespace: str, name: str) -> Optional[dict]:
        try:
            return await self.request("GET", path(kind, namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict]:
        data = await self.request("GET", path(kind, namespace), query=[("labelSelector", label_selector)])
        return list((data or {}).get("items") or [])

    async def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return await self.request("POST", path(obj["kind"], meta["namespace"]), body=obj)

    async def patch(self, obj: dict, patch: dict) -> dict:
        meta = obj["metadata"]
        return await self.request("PATCH", path(obj["kind"], meta["namespace"], meta["name"]), body=patch,
                                  content_type=MERGE_PATCH)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation (a Job's pods go with it); False if already gone."""
        try:
            await self.request("DELETE", path(kind, namespace, name),
                               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    @property
    def host(self) -> Optional[str]:
        """The API server's URL as this client reaches it."""
        return getattr(self.api.configuration, "host", None)

    def close(self) -> None:
        self.api.close()
