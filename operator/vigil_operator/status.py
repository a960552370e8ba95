"""The monitor's ``.status``: what `kubectl get monitors` shows.

`compose` joins three sources into the shape of DESIGN.md §2 (the same summary
`vigil status` prints, from `vigil.status.summarize`):

- the converge result: training Jobs (phase ``Training`` while one runs, ``Failed`` if
  one failed), Deployments waiting for them;
- each Deployment's rollout (a component is ready only when its pods are available);
- each component's own ``GET /status`` answer (readiness, drift, outliers, metrics),
  polled with `vigil.status.poll`.

Conditions keep their ``lastTransitionTime`` while their status does not change.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Optional

from vigil.plan import endpoints as plan_endpoints
from vigil.status import summarize
from vigil_operator.reconcile import FAILED, RUNNING, Converged

PHASES = ("Pending", "Training", "Progressing", "Ready", "Degraded", "Failed")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout(deployment: Optional[Mapping]) -> str:
    """Missing | Progressing | Available | Unavailable | ScaledDown, from a Deployment's status."""
    if not deployment:
        return "Missing"
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    want = spec.get("replicas", 1)
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation or status.get("updatedReplicas", 0) < want:
        return "Progressing" if want else "ScaledDown"
    if want == 0:
        return "ScaledDown"
    return "Available" if status.get("availableReplicas", 0) >= want else "Unavailable"


def endpoints(result: Converged) -> dict[str, str]:
    return plan_endpoints(result.plan, result.placement.url)


def _condition(previous: list, type_: str, status: bool, reason: str, message: str, generation: int) -> dict:
    value = "True" if status else "False"
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value and old.get("lastTransitionTime") else now()
    return {"type": type_, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def failed(message: str, reason: str, previous: Mapping, generation: int, model: Optional[str] = None) -> dict:
    """Status of a monitor the operator cannot run (bad spec, rejected object, failed training)."""
    status = {"phase": "Failed", "message": message, "observedGeneration": generation,
              "conditions": [_condition(previous.get("conditions") or [], "Ready", False, reason, message, generation)]}
    if model:
        status["model"] = model
    return status


def compose(result: Converged, answers: Mapping[str, Optional[dict]], previous: Mapping, generation: int) -> dict:
    """The full `.status` of a converged monitor; `answers` are /status replies (None = no answer)."""
    prev_conditions = list(previous.get("conditions") or [])
    effective: dict[str, Optional[dict]] = {}
    rollouts: dict[str, str] = {}
    for c in result.plan.components:
        state = rollouts[c.name] = rollout(result.deployments.get(c.name))
        answer = answers.get(c.name)
        if c.image_role == "custom":  # a user's server has no /status: its pods' readiness is the answer
            answer = {"component": c.name, "ready": state == "Available"} if state != "Missing" else None
        elif answer is not None and state != "Available":
            answer = {**answer, "ready": False}
        if state == "Missing":
            answer = None
        effective[c.name] = answer
    status = summarize(effective, endpoints(result))
    components = status["components"]
    for name, state in rollouts.items():
        if name in result.deferred:
            components[name] = "Training"
        elif state == "Missing":
            components[name] = "Pending"
        elif state == "Progressing" and components[name] != "Ready":
            components[name] = "Deploying"
    ready = status["conditions"][0]
    if status["phase"] == "Degraded" and any(s in ("Missing", "Progressing") for s in rollouts.values()):
        status["phase"] = "Progressing"

    failed_training = {c: result.training_messages.get(c, "job failed") for c, s in result.training.items() if s == FAILED}
    running = sorted(c for c, s in result.training.items() if s == RUNNING)
    if failed_training:
        message = "; ".join(f"training {c} failed (Job {result.training_jobs[c]}): {m}" for c, m in failed_training.items())
        status["phase"] = "Failed"
        ready = {"type": "Ready", "status": "False", "reason": "TrainingFailed", "message": message}
    elif running:
        status["phase"] = "Training"
        message = "training " + ", ".join(f"{c} (Job {result.training_jobs[c]})" for c in running)
        ready = {"type": "Ready", "status": "False", "reason": "Training", "message": message}
    conditions = [_condition(prev_conditions, "Ready", ready["status"] == "True", ready["reason"], ready["message"],
                             generation)]
    if result.training:
        if failed_training:
            trained = (False, "TrainingFailed", ready["message"])
        elif running:
            trained = (False, "TrainingRunning", ready["message"])
        else:
            trained = (True, "TrainingComplete", "trained " + ", ".join(sorted(result.training)))
        conditions.append(_condition(prev_conditions, "Trained", *trained, generation))
    drift = status.get("drift")
    if drift is not None and "detected" in drift:
        features = ", ".join(drift.get("featuresDrifted") or []) or "-"
        conditions.append(_condition(prev_conditions, "DriftDetected", bool(drift["detected"]),
                                     "DriftDetected" if drift["detected"] else "NoDrift",
                                     f"p-value {drift.get('pValue')}, features drifted: {features}", generation))
    if result.warnings:
        conditions.append(_condition(prev_conditions, "Warning", True, "ConfigurationWarning",
                                     "; ".join(result.warnings), generation))
    status["conditions"] = conditions
    status["message"] = ready["message"]
    status["observedGeneration"] = generation
    status["model"] = result.monitor.model_name
    if result.training:
        status["training"] = dict(result.training)
    return status


def as_patch(new: Mapping[str, Any], old: Optional[Mapping[str, Any]], top: bool = True) -> dict:
    """A merge patch turning `.status` from `old` into `new`: keys that went away (a removed
    detector's component and block) are set to None, since a merge patch keeps what it does
    not mention. kopf's own ``status.kopf`` is left alone."""
    out: dict = {}
    old = old or {}
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(old.get(key), Mapping):
            out[key] = as_patch(value, old[key], top=False)
        else:
            out[key] = value
    for key in old:
        if key not in new and not (top and key == "kopf"):
            out[key] = None
    return out
