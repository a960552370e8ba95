"""Run the operator process: kopf's reactor, a liveness endpoint and a Prometheus endpoint.

`run` is what ``vigil operator`` calls. Scope: one or more namespaces, every namespace
(`all_namespaces=True`, needs the cluster-wide RBAC), or by default the namespace the
operator itself runs in (its service account's, else the kubeconfig context's, else
``default``).

High availability: with ``peering=NAME`` several replicas run at once and kopf's peering
keeps exactly one of them acting: each replica keeps itself alive in the peering object
``NAME`` (a ``KopfPeering`` in each served namespace, or a ``ClusterKopfPeering`` when
cluster-wide; the chart creates them) and pauses while it sees a peer with a higher or
equal priority (each replica draws a random priority); when the acting replica stops or
its record expires (30 s) a standby resumes. Without it the operator runs standalone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import kopf
from prometheus_client import start_http_server

from vigil_operator.config import OperatorConfig
from vigil_operator.handlers import Runtime, configure_settings, register

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace() -> str:
    if SA_NAMESPACE.exists():
        return SA_NAMESPACE.read_text().strip() or "default"
    try:
        import kubernetes

        _, context = kubernetes.config.list_kube_config_contexts()
        return (context or {}).get("context", {}).get("namespace") or "default"
    except Exception:
        return "default"


def _scope(namespace: Union[str, Sequence[str], None], all_namespaces: bool) -> tuple[bool, list[str]]:
    if all_namespaces:
        return True, []
    if namespace is None:
        return False, [current_namespace()]
    if isinstance(namespace, str):
        return False, [n.strip() for n in namespace.split(",") if n.strip()]
    return False, list(namespace)


async def operate(namespace: Union[str, Sequence[str], None] = None, all_namespaces: bool = False, *,
                  config: Optional[OperatorConfig] = None, runtime: Optional[Runtime] = None,
                  liveness_port: Optional[int] = 8081, metrics_port: Optional[int] = 9090,
                  host: str = "0.0.0.0", stop_flag: Optional[asyncio.Event] = None,
                  ready_flag: Optional[asyncio.Event] = None, peering: Optional[str] = None,
                  priority: Optional[int] = None) -> None:
    """The operator as a coroutine (tests run it in their own loop with a stop flag)."""
    runtime = runtime or Runtime(config or OperatorConfig())
    clusterwide, namespaces = _scope(namespace, all_namespaces)
    registry = register(kopf.OperatorRegistry(), runtime)
    if priority is None:
        # Peers of equal priority all pause (kopf cannot tell which should act): each replica
        # draws its own, so the highest acts and the others stand by.
        priority = random.SystemRandom().randint(1, 2 ** 31 - 1)
    settings = configure_settings(kopf.OperatorSettings(), peering=peering, priority=priority)
    server = None
    if metrics_port is not None:
        server, _thread = start_http_server(metrics_port, addr=host, registry=runtime.metrics.registry)
    try:
        await kopf.operator(
            registry=registry, settings=settings, clusterwide=clusterwide, namespaces=namespaces,
            standalone=peering is None, peering_name=peering, memo=kopf.Memo(runtime=runtime),
            liveness_endpoint=f"http://{host}:{liveness_port}/healthz" if liveness_port is not None else None,
            stop_flag=stop_flag, ready_flag=ready_flag,
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def run(namespace: Union[str, Sequence[str], None] = None, all_namespaces: bool = False, *,
        liveness_port: Optional[int] = 8081, metrics_port: Optional[int] = 9090, host: str = "0.0.0.0",
        verbose: bool = False, debug: bool = False, config: Optional[OperatorConfig] = None,
        peering: Optional[str] = None) -> None:
    """Run the operator until SIGINT/SIGTERM.

    namespace: a namespace, a comma-separated list, or a sequence; None = the operator's own.
    all_namespaces: watch every namespace (overrides `namespace`).
    liveness_port: kopf's liveness endpoint ``http://host:PORT/healthz`` (None: off).
    metrics_port: Prometheus ``/metrics`` with the ``vigil_operator_*`` series (None: off).
    config: settings; default from ``VIGIL_OPERATOR_*`` environment variables.
    peering: the kopf peering object shared by the replicas (None: standalone, one replica).
    """
    kopf.configure(verbose=verbose, debug=debug)
    logging.getLogger("vigil_operator").setLevel(logging.DEBUG if debug else logging.INFO)
    if os.environ.get("VIGIL_OPERATOR_LOG_FORMAT") == "json":
        kopf.configure(verbose=verbose, debug=debug, log_format=kopf.LogFormat.JSON)
    asyncio.run(operate(namespace, all_namespaces, config=config, liveness_port=liveness_port,
                        metrics_port=metrics_port, host=host, peering=peering))
