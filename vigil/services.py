"""Which code serves each component: the one table `vigil serve`, `vigil up` and the
operator's container commands share.

Each entry is an import path to a `create_app()` factory that reads its settings from
environment variables with the component's prefix (``VIGIL_DRIFT_…``). Importing this
module imports none of them, so the operator and the logger never load TensorFlow.
"""

from __future__ import annotations

import importlib

SERVICES = {
    "model": "vigil.modelserver.app:create_app",
    "logger": "vigil.logger.app:create_app",
    "outlier": "vigil_detectors.outlier.service:create_app",
    "drift": "vigil_detectors.drift.service:create_app",
    "metrics": "vigil_detectors.metrics.service:create_app",
    "explainer": "vigil_detectors.explainer.service:create_app",
}


def app_factory(component: str):
    """The `create_app` callable of a component (imports its module)."""
    try:
        target = SERVICES[component]
    except KeyError:
        raise ValueError(f"unknown component {component!r}; one of {', '.join(SERVICES)}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
