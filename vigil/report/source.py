"""What a report compares: the monitor's drift settings and check, its reference, and the current data.

The drift settings come from the plan (`vigil.plan.build_plan`) with the placement
`vigil up` uses, so the report's check is the one the local drift service would run; a
monitor without a drift block gets the block's defaults (``type: ks`` …). The check is
fitted by `vigil_detectors.drift.fitting.fit_check`, the live service's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil.data import DataError, load_table
from vigil.spec import ModelMonitor, load_monitor, monitor_from_dict


@dataclass
class Source:
    monitor: ModelMonitor
    monitor_path: Path
    settings: Any  # DriftSettings
    check: Any  # DriftStatistic
    reference: np.ndarray  # (rows, features) as the check was fitted on
    drift_configured: bool  # False: the monitor has no drift block; its defaults were used


def _with_drift(monitor: ModelMonitor) -> tuple[ModelMonitor, bool]:
    if getattr(monitor.spec.detectors, "drift", None) is not None:
        return monitor, True
    doc = monitor.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"].setdefault("detectors", {})["drift"] = {}
    return monitor_from_dict(doc), False


def load_source(monitor_path: str, workdir: Path) -> Source:
    """The monitor at `monitor_path` and its fitted drift check (`workdir`: where downloads go)."""
    from vigil.local import local_plan
    from vigil_detectors.drift.fitting import fit_check

    path = Path(monitor_path)
    monitor, configured = _with_drift(load_monitor(path))
    plan, _ = local_plan(monitor, path.parent, workdir, 0)
    component = plan.get("drift")
    assert component is not None  # _with_drift gave the monitor a drift block
    settings = component.settings
    check = fit_check(settings)
    reference = getattr(check, "x_ref", None)
    if reference is None:  # an alibi-detect artifact: the histograms come from the monitor's reference
        if not settings.reference and not monitor.spec.reference:
            raise DataError(f"{path}: the drift artifact holds no reference data and the monitor names none")
        reference = load_table(settings.reference or _reference_path(monitor, path, workdir),
                               settings.feature_names)
    return Source(monitor, path, settings, check, np.asarray(reference, dtype=np.float64), configured)


def _reference_path(monitor: ModelMonitor, path: Path, workdir: Path) -> str:
    from vigil.local import LocalPlacement

    assert monitor.spec.reference is not None
    return LocalPlacement(workdir, path.parent).path(monitor.spec.reference.storage_uri)
