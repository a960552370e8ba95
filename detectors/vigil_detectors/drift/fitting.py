"""The drift check a drift service runs, from its settings: loaded from an artifact or fitted from the reference.

One function, so the live service (`DriftDetector.load`) and `vigil report` decide drift
with the same fitted check (DESIGN §10: a report and the service agree on the same data).
Importing this module imports neither FastAPI nor TensorFlow; an alibi-detect artifact
loads TensorFlow when it is read.
"""

from __future__ import annotations

import logging

from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import DriftStatistic, fit_statistic, load_statistic
from vigil_detectors.frame import DetectorError

log = logging.getLogger("vigil.drift")


def fit_check(s: DriftSettings) -> DriftStatistic:
    """The check of a drift service with settings `s` (see the module docstring)."""
    overrides = s.statistics_indices
    if s.artifact:
        return load_statistic(s.artifact, p_value=s.p_value, correction=s.correction, kind=s.statistic,
                              statistics=overrides)
    if s.reference:
        from vigil.data import complete_rows, load_table

        x_ref, dropped = complete_rows(load_table(s.reference, s.feature_names, s.categorical, missing="keep"))
        log.info("drift: fitting on %d reference rows%s", x_ref.shape[0],
                 f" ({dropped} rows holding a missing value dropped)" if dropped else "")
        return fit_statistic(x_ref, p_value=s.p_value, correction=s.correction,
                             categorical=s.categorical_indices, kind=s.statistic, statistics=overrides)
    raise DetectorError("the drift detector needs VIGIL_DRIFT_ARTIFACT (a saved detector) or "
                        "VIGIL_DRIFT_REFERENCE (reference data to fit from)")
