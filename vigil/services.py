"""Which code serves each component: `vigil serve NAME` runs the registry's app factory.

`serve` holds the one uvicorn configuration every component runs under (bench/bench_peers.py
serves its do-nothing floor app through it too, so the floor is uvicorn as we run it).

Each component's row in `vigil.components` names a `create_app()` factory (an import
path) that reads its settings from environment variables with the component's prefix
(``VIGIL_DRIFT_…``). Importing this module imports none of them, so the operator and the
logger never load TensorFlow.
"""

from __future__ import annotations

from typing import Any

from vigil import components


def app_factory(component: str):
    """The `create_app` callable of a component (imports its module)."""
    return components.load_object(components.get(component).app)


def serve(app: Any, host: str, port: int, log_level: str = "info", factory: bool = False) -> None:
    """Run `app` (an ASGI app, or with `factory` a callable returning one) under uvicorn until stopped:
    logging stays as `vigil.logs` configured it, no access log (a line per event would cost more
    than the event)."""
    import uvicorn

    uvicorn.run(app, factory=factory, host=host, port=port, log_level=log_level, log_config=None, access_log=False)
