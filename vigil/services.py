"""Which code serves each component: `vigil serve NAME` runs the registry's app factory.

Each component's row in `vigil.components` names a `create_app()` factory (an import
path) that reads its settings from environment variables with the component's prefix
(``VIGIL_DRIFT_…``). Importing this module imports none of them, so the operator and the
logger never load TensorFlow.
"""

from __future__ import annotations

from vigil import components


def app_factory(component: str):
    """The `create_app` callable of a component (imports its module)."""
    return components.load_object(components.get(component).app)
