"""kopf handlers for `ModelMonitor`: reconcile on create/update/resume, refresh status on a timer.

Both paths run the same `sync`: converge the children (`vigil_operator.reconcile`), poll
every component's ``/status`` (`vigil.status.poll`), write ``.status``
(`vigil_operator.status.compose`), post Events on phase changes and when drift is
detected, and count the outcome in the operator's metrics.

- An invalid spec (or an object the API server rejects) sets phase ``Failed`` with the
  bad field in the message; the change handler then raises `kopf.PermanentError`, so kopf
  does not retry it, and the next edit of the spec runs the update handler again.
- API errors are temporary: the handler raises `kopf.TemporaryError` and kopf retries;
  except 401/403 (the operator's own RBAC), which also set ``Failed`` and say so.
- The timer converges as well, so a training Job that finished lets its detector's
  Deployment be created and a deleted child comes back. A per-monitor lock and the last
  converged ``metadata.generation`` keep a timer holding an older spec from undoing a
  newer one.

Handlers are registered into a registry by `register` (not at import), so one process can
run operators with different settings (the tests do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import kopf

from vigil.spec import API_GROUP, API_VERSION, SpecError
from vigil.status import poll
from vigil_operator import status as status_mod
from vigil_operator.config import OperatorConfig
from vigil_operator.kube import ApiError, Kube, load_api_client
from vigil_operator.metrics import OperatorMetrics
from vigil_operator.reconcile import Converged, Reconciler, Rejected

#: The watched resource as kopf takes it positionally: (group, version, plural).
RESOURCE = (API_GROUP, API_VERSION, "modelmonitors")
FINALIZER = "vigil.dev/kopf-finalizer"


@dataclass
class Runtime:
    """What the handlers share: settings, the API client, metrics and per-monitor bookkeeping."""

    config: OperatorConfig
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    kube: Optional[Kube] = None
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    generations: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def reconciler(self) -> Reconciler:
        if self.kube is None:
            raise RuntimeError("the operator has not started (no Kubernetes client)")
        return Reconciler(self.kube, self.config)

    def status_urls(self, result: Converged) -> dict[str, str]:
        """Where to GET /status: the Service, unless the config maps the component elsewhere."""
        ns, name = result.monitor.namespace, result.monitor.name
        return {c.name: self.config.status_urls.get(f"{ns}/{name}/{c.name}") or result.placement.url(c.name)
                for c in result.plan.components if c.image_role != "custom"}


def configure_settings(settings: kopf.OperatorSettings, peering: Optional[str] = None,
                       priority: int = 0) -> kopf.OperatorSettings:
    """kopf's bookkeeping lives in annotations under vigil.dev/ (never in .status, which the CRD
    schema prunes); only warnings are posted as Events besides our own; standalone unless
    `peering` names the peering object the replicas share (then it must exist)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="vigil.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="vigil.dev", key="last-handled-configuration")
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "vigil-operator"
    if peering:
        settings.peering.standalone = False
        settings.peering.mandatory = True
        settings.peering.name = peering
        settings.peering.priority = priority
        settings.peering.stealth = True  # no log line per keep-alive
        settings.peering.lifetime = 30  # a standby takes over at most this long after the active one dies
    else:
        settings.peering.standalone = True
    # No watching of namespaces and CRDs: the operator serves the namespaces it is given and
    # the CRD installed before it starts, so RBAC needs neither (least privilege).
    settings.scanning.disabled = True
    # A monitor being deleted waits for a running status refresh to finish: check every
    # second (kopf's default is a minute) so `kubectl delete` returns promptly.
    settings.background.cancellation_polling = 1.0
    return settings


def _merged(old: Mapping, patch: Mapping) -> dict:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _announce(body: Mapping, old: Mapping, new: Mapping) -> None:
    """Events on the monitor: phase changes, drift detected / resolved."""
    before, after = old.get("phase"), new.get("phase")
    if before != after:
        kind = "Warning" if after in ("Failed", "Degraded") else "Normal"
        kopf.event(body, type=kind, reason="PhaseChanged",
                   message=f"{before or 'None'} -> {after}: {new.get('message', '')}"[:1000])
    was = bool((old.get("drift") or {}).get("detected"))
    drift = new.get("drift") or {}
    now = bool(drift.get("detected"))
    if now and not was:
        features = ", ".join(drift.get("featuresDrifted") or []) or "-"
        kopf.event(body, type="Warning", reason="DriftDetected",
                   message=f"drift detected: p-value {drift.get('pValue')}, features drifted: {features}")
    elif was and not now and "drift" in new:
        kopf.event(body, type="Normal", reason="DriftResolved", message="the last drift window showed no drift")


async def sync(body: Mapping[str, Any], patch: kopf.Patch, runtime: Runtime, logger: logging.Logger,
               *, from_handler: bool) -> Optional[str]:
    """Converge one monitor and write its status; returns the phase (None when skipped)."""
    meta = body.get("metadata") or {}
    key = _key(meta)
    generation = int(meta.get("generation") or 0)
    previous = dict(body.get("status") or {})
    model = ((body.get("spec") or {}).get("model") or {}).get("name") or meta.get("name")
    metrics = runtime.metrics
    if runtime.kube is None:
        return None  # stopping (after cleanup): a timer kopf has not stopped yet
    lock = runtime.locks.setdefault(key, asyncio.Lock())
    result: Optional[Converged] = None
    async with lock:
        if generation < runtime.generations.get(key, 0):
            return None  # a newer spec has been converged already; this body is stale
        try:
            result = await runtime.reconciler.converge(body)
        except SpecError as e:
            new = status_mod.failed(str(e), "InvalidSpec", previous, generation, model)
        except Rejected as e:
            new = status_mod.failed(str(e), "Rejected", previous, generation, model)
        except Exception as e:
            metrics.errors.inc()
            if isinstance(e, ApiError) and e.status in (401, 403):
                # the operator's own permissions: nothing a retry fixes, so say it where users look
                new = status_mod.failed(f"the operator is not allowed to manage this monitor's objects: {e.message} "
                                        f"(check its RBAC rules)", "Forbidden", previous, generation, model)
            else:
                metrics.reconciles.labels("error").inc()
                if from_handler:
                    raise kopf.TemporaryError(f"reconcile failed, will retry: {e}", delay=5) from e
                logger.warning(f"reconcile failed, will retry on the next tick: {e}")
                return None
        runtime.generations[key] = generation
    if result is not None:
        metrics.reconciles.labels("success").inc()
        if result.actions:
            changed = {k: v for k, v in result.actions.items() if v != "unchanged"}
            if changed:
                logger.info(f"applied: {changed}")
        try:
            answers = await poll(runtime.status_urls(result), timeout=runtime.config.status_timeout)
        except Exception as e:  # never let a status poll break a reconcile
            metrics.errors.inc()
            logger.warning(f"status poll failed: {e}")
            answers = {}
        new = status_mod.compose(result, answers, previous, generation)
    else:
        metrics.reconciles.labels("invalid").inc()
    status_patch = status_mod.as_patch(new, previous)
    if _merged(previous, status_patch) != previous:
        patch.setdefault("status", {}).update(status_patch)
    _announce(body, previous, new)
    metrics.set_phase(key[0], key[1], new["phase"])
    if result is None and from_handler:
        raise kopf.PermanentError(new["message"])
    return new["phase"]


# ----------------------------------------------------------------------------- handlers

async def reconcile(body, patch, logger, memo, **_):
    await sync(body, patch, memo.runtime, logger, from_handler=True)


async def refresh(body, patch, logger, memo, **_):
    await sync(body, patch, memo.runtime, logger, from_handler=False)


def _key(meta: dict) -> tuple[str, str]:
    """(namespace, name) of a monitor: what the per-monitor locks and metrics are keyed by."""
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


async def forget(body, memo, **_):
    meta = body.get("metadata") or {}
    runtime: Runtime = memo.runtime
    key = _key(meta)
    runtime.metrics.forget(*key)
    runtime.locks.pop(key, None)
    runtime.generations.pop(key, None)


async def start(memo, logger, **_):
    runtime: Runtime = memo.runtime
    if runtime.kube is None:
        runtime.kube = Kube(await asyncio.to_thread(load_api_client))
    logger.info(f"vigil operator: images {runtime.config.image('server')}, {runtime.config.image('detectors')}; "
                f"status every {runtime.config.status_interval}s")


async def stop(memo, **_):
    runtime: Runtime = memo.runtime
    if runtime.kube is not None:
        runtime.kube.close()
        runtime.kube = None


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> kopf.OperatorRegistry:
    # A registry of our own has none of kopf's default login handlers: in-cluster service
    # account, else kubeconfig, through the kubernetes client (exec plugins included).
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(start)
    kopf.on.cleanup(registry=registry)(stop)
    kopf.on.create(*RESOURCE, registry=registry)(reconcile)
    kopf.on.update(*RESOURCE, field="spec", registry=registry)(reconcile)
    kopf.on.resume(*RESOURCE, registry=registry)(reconcile)
    kopf.timer(*RESOURCE, interval=runtime.config.status_interval, registry=registry)(refresh)
    kopf.on.delete(*RESOURCE, optional=True, registry=registry)(forget)
    return registry
