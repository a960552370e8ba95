"""The constraints a quality service checks, from its settings: a baseline directory or the profiled reference.

One function, so the live service (`QualityDetector.load`) and `vigil report` check the same
constraints (DESIGN §10: a report and the service agree on the same data). With no baseline
directory the reference is profiled (`vigil.baseline.compute_baseline`) and, when `write`
and a state dir are given, written to ``<state dir>/baseline`` for the user to edit.
Imports neither FastAPI nor TensorFlow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from vigil.instances import InputSchema
from vigil_detectors.frame import DetectorError
from vigil_detectors.quality.checks import Compiled, compile_constraints
from vigil_detectors.quality.settings import QualitySettings

log = logging.getLogger("vigil.quality")


@dataclass
class Loaded:
    schema: InputSchema
    names: list[str]
    compiled: Compiled
    directory: Optional[str]  # the baseline directory read, or the profiled one written (None: not written)
    profiled: bool  # True: profiled from the reference just now


def load_constraints(s: QualitySettings, *, write: bool = True) -> Loaded:
    """The compiled constraints of a quality service with settings `s` (see the module docstring)."""
    from vigil.baseline import compute_baseline, load_baseline

    directory = None
    if s.baseline:
        baseline = load_baseline(s.baseline)
        directory = s.baseline
        names = list(s.feature_names or baseline.constraints.names)
        schema = InputSchema.from_settings(names, s.categorical_indices)
    elif s.reference:
        from vigil.data import load_table

        names = list(s.feature_names or [])
        schema = InputSchema.from_settings(names or None, s.categorical_indices)
        # category strings read through the schema's value lists; missing cells are counted, not refused
        baseline = compute_baseline(load_table(s.reference, names or None, s.categorical, missing="keep"), schema)
        names = names or [f.name for f in baseline.statistics.features]
        if write and s.state_dir:
            directory = str(baseline.write(Path(s.state_dir) / "baseline"))
            log.info("quality: baseline profiled from %s, written to %s (edit it and set "
                     "spec.baseline.storageUri to use your copy)", s.reference, directory)
    else:
        raise DetectorError("the quality detector needs VIGIL_QUALITY_BASELINE (a baseline directory) or "
                            "VIGIL_QUALITY_REFERENCE (reference data to profile)")
    unknown = sorted(set(baseline.constraints.names) - set(names))
    if unknown:
        log.warning("quality: constraints name features the schema does not have (ignored): %s", ", ".join(unknown))
    if not set(names) & set(baseline.constraints.names):
        raise DetectorError(f"the baseline's constraints name none of the features {names}")
    compiled = compile_constraints(baseline.constraints, names, dict(schema.categorical))
    return Loaded(schema, names, compiled, directory, profiled=not s.baseline)
