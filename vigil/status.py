"""The monitor summary: what `vigil status` prints and the operator writes to `.status`.

Every component answers `GET /status` with JSON. The common part is
``{"component": "drift", "ready": true, "events": {"received": n, "rejected": n}}``, and
``"recent"`` (`vigil.health`; detectors, logger, model server): when it rejected or skipped
most of what it received lately, ``recent.degraded`` is true and ``recent.message`` says
why — the component is then ``Degraded`` and so is the monitor, with that message;
each detector adds one block under its own key, which this module lifts into the summary:

- drift:    ``"drift": {"detected", "pValue", "featuresDrifted", "lastCheck", "windows", ...}``
- outlier:  ``"outliers": {"rate", "seen", "threshold", ...}``
- quality:  ``"quality": {"violations", "featuresViolated", "lastCheck", ...}``
- metrics:  ``"metrics": {"accuracy", "feedback", ...}`` (regression: ``"mae"``, ``"rmse"``, ``"r2"``)
- explainer: ``"explainer": {"explanations", ...}``

`history` asks the detectors that keep a history of window checks (drift, quality) for
their last N (``GET /history?limit=N`` -> ``{"checks": [...]}``, newest last) and gives
``{"drift": [...], "quality": [...]}`` — an empty list for a detector that is not
deployed or does not answer; `format_history` prints it for `vigil status --history N`.

`poll` asks each component of a plan (async, with a short timeout) and `summarize`
turns the answers into the `.status` shape of DESIGN.md §2 (minus the fields only the
operator knows: observedGeneration, conditions' transition times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Optional

import httpx

from vigil import components as registry

_METRICS_SHOWN = ("accuracy", "accuracyCumulative", "mae", "rmse", "r2", "feedback", "matched", "pending")


def component_state(answer: Optional[dict]) -> str:
    if answer is None:
        return "Unreachable"
    if not answer.get("ready"):
        return "NotReady"
    return "Degraded" if (answer.get("recent") or {}).get("degraded") else "Ready"


def _degraded_message(answers: dict[str, Optional[dict]]) -> list[str]:
    return [((a or {}).get("recent") or {}).get("message") or f"{n} is degraded"
            for n, a in answers.items() if component_state(a) == "Degraded"]


def summarize(answers: dict[str, Optional[dict]], endpoints: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """`.status` from each component's /status answer (None = unreachable)."""
    components = {name: component_state(a) for name, a in answers.items()}
    if not components:
        phase = "Pending"
    elif all(s == "Ready" for s in components.values()):
        phase = "Ready"
    elif any(s in ("Ready", "Degraded") for s in components.values()):
        phase = "Degraded"
    else:
        phase = "Progressing"
    not_ready = sorted(n for n, s in components.items() if s not in ("Ready", "Degraded"))
    problems = ([f"not ready: {', '.join(not_ready)}"] if not_ready else []) + _degraded_message(answers)
    message = "; ".join(problems) or "all components ready"
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "components": components,
        "conditions": [{
            "type": "Ready", "status": "True" if phase == "Ready" else "False",
            "reason": "AllComponentsReady" if phase == "Ready" else
            "ComponentsNotReady" if not_ready else "ComponentsDegraded",
            "message": message,
        }],
    }
    if endpoints:
        status["endpoints"] = endpoints
    for row in registry.rows():  # each component's block (status_key) is lifted as it is
        data = (answers.get(row.name) or {}).get(row.status_key) if row.status_key else None
        if not isinstance(data, dict) or not row.status_key:
            continue
        status[row.status_key] = {k: data[k] for k in row.status_fields if k in data} if row.status_fields else data
    return status


async def poll(urls: dict[str, str], timeout: float = 2.0,
               client_factory: Optional[Callable[[], httpx.AsyncClient]] = None) -> dict[str, Optional[dict]]:
    """GET {url}/status for each component concurrently; None for any that do not answer."""
    async def one(client: httpx.AsyncClient, url: str) -> Optional[dict]:
        try:
            r = await client.get(url.rstrip("/") + "/status", timeout=timeout)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async with (client_factory() if client_factory else httpx.AsyncClient()) as client:
        names = list(urls)
        results = await asyncio.gather(*(one(client, urls[n]) for n in names))
    return dict(zip(names, results, strict=True))


#: Detectors that serve ``GET /history`` (DESIGN §10), in the order `vigil status --history` shows them.
HISTORY_COMPONENTS = ("drift", "quality")


async def history(urls: dict[str, str], limit: int, timeout: float = 5.0,
                  client_factory: Optional[Callable[[], httpx.AsyncClient]] = None) -> dict[str, list[dict]]:
    """The last `limit` checks of each history-keeping detector among `urls` (see the module docstring)."""
    async def one(client: httpx.AsyncClient, url: Optional[str]) -> list[dict]:
        if not url:
            return []
        try:
            r = await client.get(url.rstrip("/") + "/history", params={"limit": limit}, timeout=timeout)
            checks = r.json().get("checks") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return []
        return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []

    async with (client_factory() if client_factory else httpx.AsyncClient()) as client:
        results = await asyncio.gather(*(one(client, urls.get(n)) for n in HISTORY_COMPONENTS))
    return dict(zip(HISTORY_COMPONENTS, results, strict=True))


def _history_line(name: str, check: dict) -> str:
    when = check.get("time") or check.get("lastCheck") or check.get("endTime") or "-"
    if name == "drift":
        verdict = "DRIFT" if check.get("detected") else "ok"
        p = check.get("pValue")
        return (f"{when}  window={check.get('window', '-')}  {verdict:<5}  p={'-' if p is None else f'{p:.4g}'}  "
                f"n={check.get('checkedInstances', '-')}  features={','.join(check.get('featuresDrifted') or []) or '-'}")
    violations = check.get("violations")
    shown = len(violations) if isinstance(violations, list) else violations
    features = check.get("featuresViolated")
    return (f"{when}  window={check.get('window', '-')}  violations={'-' if shown is None else shown}"
            + (f"  features={','.join(features) or '-'}" if isinstance(features, list) else ""))


def format_history(checks: dict[str, list[dict]]) -> str:
    """`vigil status --history N` as text: each detector's checks, oldest first."""
    lines = []
    for name in HISTORY_COMPONENTS:
        entries = checks.get(name) or []
        lines.append(f"{name.upper()} HISTORY ({len(entries)} checks)" if entries else
                     f"{name.upper()} HISTORY  none (not deployed, not persisted, or no window checked yet)")
        lines += [f"  {_history_line(name, c)}" for c in entries]
    return "\n".join(lines)


def format_table(status: dict[str, Any]) -> str:
    """Human summary for `vigil status`, in the spirit of `kubectl get monitors`."""
    head = f"MONITOR    {status['monitor']}\n" if status.get("monitor") else ""
    lines = [f"{head}PHASE      {status['phase']}"]
    if status["phase"] != "Ready" and status.get("message"):
        lines.append(f"MESSAGE    {status['message']}")
    restarts = status.get("restarts") or {}
    for name, state in status.get("components", {}).items():
        extra = f"  restarts={restarts[name]}" if restarts.get(name) else ""
        lines.append(f"  {name:<10} {state}{extra}")
    if "drift" in status:
        d = status["drift"]
        p = d.get("pValue")
        lines.append(f"DRIFT      {'DETECTED' if d.get('detected') else 'no'}{' (stale)' if d.get('stale') else ''}  "
                     f"p={p if p is None else f'{p:.4g}'}  windows={d.get('windows', 0)}  "
                     f"features={','.join(d.get('featuresDrifted') or []) or '-'}")
    if "outliers" in status:
        o = status["outliers"]
        lines.append(f"OUTLIERS   rate={o.get('rate', 0):.3f}  seen={o.get('seen', 0)}")
    if "quality" in status:
        q = status["quality"]
        lines.append(f"QUALITY    violations={q.get('violations', 0)}  "
                     f"features={','.join(q.get('featuresViolated') or []) or '-'}  last={q.get('lastCheck') or '-'}")
    if "metrics" in status:
        m = status["metrics"]
        shown = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()
                          if k in _METRICS_SHOWN and v is not None)
        lines.append(f"METRICS    {shown or 'no feedback yet'}")
    for name, url in (status.get("endpoints") or {}).items():
        lines.append(f"ENDPOINT   {name:<10} {url}")
    if status.get("transport"):
        t = status["transport"]
        lines.append(f"TRANSPORT  {t.get('type')}  {t.get('url')}" + (f"  {t['state']}" if t.get("state") else ""))
    return "\n".join(lines)
