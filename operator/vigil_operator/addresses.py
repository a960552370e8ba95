"""Which hosts a monitor may make its pods call: `https://` storage and `model.endpoint`.

Anyone allowed to create a ModelMonitor could otherwise point a pod the operator runs
at the cloud's instance metadata service (credentials), at the node itself, or at the
Kubernetes API server. Refused (DESIGN §12), as a literal address or as a name that
resolves to one when the operator plans:

- link-local addresses (169.254.0.0/16 — the metadata services of AWS, GCP, Azure —,
  fe80::/10) and AWS's IPv6 metadata address fd00:ec2::254;
- loopback (127.0.0.0/8, ::1) and the unspecified address (0.0.0.0, ::);
- the API server: the names ``kubernetes``, ``kubernetes.default``,
  ``kubernetes.default.svc[.<cluster domain>]``, the address in
  ``KUBERNETES_SERVICE_HOST`` and the host the operator's own client talks to.

A name that does not resolve where the operator runs is let through (the pod may see
other DNS; it cannot reach a refused address by a name that resolves nowhere).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Iterable
from typing import Optional
from urllib.parse import urlsplit

API_SERVER_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")
EXTRA_REFUSED = (ipaddress.ip_address("fd00:ec2::254"),)
RESOLVE_TIMEOUT = 2.0
CACHE_SECONDS = 30.0  # each reconcile (every status interval) would otherwise ask DNS again
_cache: dict[str, tuple[float, list[str]]] = {}


async def resolve(host: str) -> list[str]:
    """The addresses `host` resolves to here ([] if none), cached for CACHE_SECONDS."""
    now = time.monotonic()
    hit = _cache.get(host)
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        infos = await asyncio.wait_for(asyncio.to_thread(socket.getaddrinfo, host, None), RESOLVE_TIMEOUT)
        found = sorted({str(info[4][0]) for info in infos})
    except (OSError, asyncio.TimeoutError, UnicodeError):
        found = []
    _cache[host] = (now, found)
    return found


def _host(url: str) -> Optional[str]:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def api_server_hosts(client_host: Optional[str] = None) -> set[str]:
    """Hosts (names or addresses, lower case) that are the API server."""
    out = set()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        out.add(os.environ["KUBERNETES_SERVICE_HOST"].strip("[]").lower())
    if client_host:
        host = _host(client_host) if "://" in client_host else client_host
        if host:
            out.add(host.lower())
    return out


def refused_address(address: str, api_hosts: Iterable[str] = ()) -> Optional[str]:
    """Why an IP address is refused, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip in EXTRA_REFUSED:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_loopback:
        return "a loopback address (the node or pod itself)"
    if ip.is_unspecified:
        return "the unspecified address"
    if str(ip) in {h.strip("[]") for h in api_hosts}:
        return "the Kubernetes API server"
    return None


def refused_name(host: str, api_hosts: Iterable[str] = ()) -> Optional[str]:
    """Why a host as written is refused (without resolving it), or None."""
    name = host.lower().rstrip(".")
    if name in API_SERVER_NAMES or name.startswith("kubernetes.default.svc.") or name in set(api_hosts):
        return "the Kubernetes API server"
    return refused_address(name, api_hosts)


async def check_url(url: str, api_hosts: Iterable[str] = ()) -> Optional[str]:
    """Why the pods must not call `url`, or None; resolves names (bounded in time)."""
    host = _host(url)
    if not host:
        return "it names no host"
    api_hosts = set(api_hosts)
    reason = refused_name(host, api_hosts)
    if reason:
        return f"{host} is {reason}"
    try:
        ipaddress.ip_address(host)
        return None  # a literal address that passed
    except ValueError:
        pass
    for address in await resolve(host):
        reason = refused_address(address, api_hosts)
        if reason:
            return f"{host} resolves to {address}, {reason}"
    return None
