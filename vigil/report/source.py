"""What a report compares: the monitor's drift settings and check, its reference, and the current data.

The drift and quality settings come from the plan (`vigil.plan.build_plan`) with the
placement `vigil up` uses, so the report's checks are the ones the local services would
run; a monitor without a drift (or quality) block gets the block's defaults (``type: ks``,
the baseline profiled from the reference …). The check is
fitted by `vigil_detectors.drift.fitting.fit_check`, the live service's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil.data import DataError, complete_rows, load_table
from vigil.spec import ModelMonitor, load_monitor, monitor_from_dict


@dataclass
class Source:
    monitor: ModelMonitor
    monitor_path: Path
    settings: Any  # DriftSettings
    check: Any  # DriftStatistic
    reference: np.ndarray  # (rows, features) as the check was fitted on
    drift_configured: bool  # False: the monitor has no drift block; its defaults were used
    quality_settings: Any  # QualitySettings
    quality_configured: bool


def _with_blocks(monitor: ModelMonitor) -> tuple[ModelMonitor, bool, bool]:
    """The (tabular) monitor with a drift and a quality block, their defaults where absent; whether
    each was configured."""
    d = monitor.spec.detectors
    drift, quality = getattr(d, "drift", None) is not None, getattr(d, "quality", None) is not None
    if drift and quality:
        return monitor, drift, quality
    doc = monitor.model_dump(mode="json", by_alias=True, exclude_none=True)
    blocks = doc["spec"].setdefault("detectors", {})
    blocks.setdefault("drift", {})
    blocks.setdefault("quality", {})
    return monitor_from_dict(doc), drift, quality


def load_source(monitor_path: str, workdir: Path) -> Source:
    """The monitor at `monitor_path` and its fitted drift check (`workdir`: where downloads go)."""
    from vigil.local import local_plan
    from vigil_detectors.drift.fitting import fit_check

    path = Path(monitor_path)
    monitor = load_monitor(path)
    if not monitor.spec.schema_.feature_names:
        raise DataError(f"{path}: vigil report compares tabular features (schema.featureNames); this monitor's "
                        f"instances are tensors of shape {monitor.spec.schema_.shape}")
    monitor, configured, quality_configured = _with_blocks(monitor)
    plan, _ = local_plan(monitor, path.parent, workdir, 0)
    component = plan.get("drift")
    assert component is not None  # _with_blocks gave the monitor a drift block
    settings = component.settings
    check = fit_check(settings)
    reference = getattr(check, "x_ref", None)
    if reference is None:  # an alibi-detect artifact: the histograms come from the monitor's reference
        if not settings.reference and not monitor.spec.reference:
            raise DataError(f"{path}: the drift artifact holds no reference data and the monitor names none")
        reference, _ = complete_rows(load_table(settings.reference or _reference_path(monitor, path, workdir),
                                                settings.feature_names, settings.categorical, missing="keep"))
    quality = plan.get("quality")
    return Source(monitor, path, settings, check, np.asarray(reference, dtype=np.float64), configured,
                  quality.settings if quality else None, quality_configured)


def _reference_path(monitor: ModelMonitor, path: Path, workdir: Path) -> str:
    from vigil.local import LocalPlacement

    assert monitor.spec.reference is not None
    return LocalPlacement(workdir, path.parent).path(monitor.spec.reference.storage_uri)
