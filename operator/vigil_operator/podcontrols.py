"""Pod controls: where and how a component's pods run (DESIGN §12, "Pod controls").

Three layers, later ones winning: the chart's ``componentDefaults`` (the operator's
``component_defaults``), the monitor's ``spec.pod``, and the component's own ``pod`` block.
A field of a later layer replaces the earlier one, except maps (``annotations``,
``labels``, ``nodeSelector``, ``serviceAccountAnnotations``), which merge key by key, and
the chart's ``imagePullSecrets``, which are added to a monitor's own (a platform's registry
credentials reach every pod whatever the monitor says).

`apply` writes the result into a pod template; Vigil's own labels and annotations win
over a user's of the same key (selectors and the digest must stay Vigil's).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Optional

FIELDS = ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName",
          "annotations", "labels", "imagePullSecrets", "serviceAccountAnnotations")
MAPS = ("annotations", "labels", "nodeSelector", "serviceAccountAnnotations")
#: Pod spec fields set verbatim from the controls.
POD_SPEC_FIELDS = ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName")


def _layer(doc: Optional[Mapping]) -> dict:
    return {k: copy.deepcopy(v) for k, v in (doc or {}).items() if k in FIELDS and v not in (None, {}, [], "")}


def merge(defaults: Optional[Mapping], *layers: Optional[Mapping]) -> dict:
    """The effective controls of one component: `defaults` (the chart's), then each layer."""
    out = _layer(defaults)
    platform_secrets = out.pop("imagePullSecrets", [])
    for layer in layers:
        for key, value in _layer(layer).items():
            if key in MAPS:
                out[key] = {**out.get(key, {}), **value}
            else:
                out[key] = value
    secrets = _unique(out.get("imagePullSecrets", []) + platform_secrets)
    if secrets:
        out["imagePullSecrets"] = secrets
    return out


def _unique(refs: Iterable[Any]) -> list:
    seen, out = set(), []
    for ref in refs:
        name = ref.get("name") if isinstance(ref, Mapping) else str(ref)
        if name and name not in seen:
            seen.add(name)
            out.append({"name": name})
    return out


def apply(template: dict, controls: Mapping) -> dict:
    """Put `controls` into a pod template ({metadata, spec}) in place; returns it."""
    meta = template.setdefault("metadata", {})
    spec = template["spec"]
    if controls.get("labels"):
        meta["labels"] = {**controls["labels"], **meta.get("labels", {})}
    if controls.get("annotations"):
        meta["annotations"] = {**controls["annotations"], **meta.get("annotations", {})}
    for key in POD_SPEC_FIELDS:
        if key in controls:
            spec[key] = copy.deepcopy(controls[key])
    if controls.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(controls["imagePullSecrets"])
    return template
