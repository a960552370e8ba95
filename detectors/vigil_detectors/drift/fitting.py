"""The drift check a drift service runs, from its settings: loaded from an artifact or fitted from the reference.

One function, so the live service (`DriftDetector.load`) and `vigil report` decide drift
with the same fitted check (DESIGN §10: a report and the service agree on the same data).
Importing this module imports neither FastAPI nor TensorFlow; an alibi-detect artifact
loads TensorFlow when it is read.
"""

from __future__ import annotations

import logging
from typing import Optional

from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import DriftStatistic, fit_statistic, load_statistic
from vigil_detectors.drift.statistics.bins import Bins
from vigil_detectors.frame import DetectorError

log = logging.getLogger("vigil.drift")


def baseline_bins(directory: str, feature_names: Optional[list[str]]) -> dict[int, Bins]:
    """Per feature index, the bins of the baseline's ``statistics.json`` histograms (read by `vigil.baseline`)."""
    from vigil.baseline import load_baseline

    names = list(feature_names or [])
    out: dict[int, Bins] = {}
    for f in load_baseline(directory).statistics.features:
        if f.histogram and f.name in names:
            try:
                out[names.index(f.name)] = Bins.from_json(f.histogram)
            except (KeyError, ValueError) as exc:
                raise DetectorError(f"baseline {directory}: the histogram of {f.name!r} is unusable: {exc}") from None
    return out

def fit_check(s: DriftSettings) -> DriftStatistic:
    """The check of a drift service with settings `s` (see the module docstring). With a baseline
    (``VIGIL_DRIFT_BASELINE``), the binned statistics score on its histograms' bins; a baseline that
    cannot be read is logged and the reference binned instead (the quality service reports it)."""
    overrides = s.statistics_indices
    bins = None
    if s.baseline:
        from vigil.baseline import BaselineError

        try:
            bins = baseline_bins(s.baseline, s.feature_names)
        except (BaselineError, DetectorError, OSError) as exc:  # drift stands on the reference's own bins
            log.warning("drift: the baseline's histograms are not used (%s); binning the reference", exc)
    if s.artifact:
        return load_statistic(s.artifact, p_value=s.p_value, correction=s.correction, kind=s.statistic,
                              statistics=overrides, bins=bins)
    if s.reference:
        from vigil.data import complete_rows, load_table

        x_ref, dropped = complete_rows(load_table(s.reference, s.feature_names, s.categorical, missing="keep"))
        log.info("drift: fitting on %d reference rows%s", x_ref.shape[0],
                 f" ({dropped} row{'s' * (dropped != 1)} holding a missing value dropped)" if dropped else "")
        return fit_statistic(x_ref, p_value=s.p_value, correction=s.correction,
                             categorical=s.categorical_indices, kind=s.statistic, statistics=overrides, bins=bins)
    raise DetectorError("the drift detector needs VIGIL_DRIFT_ARTIFACT (a saved detector) or "
                        "VIGIL_DRIFT_REFERENCE (reference data to fit from)")
