"""The quality part of a report: the quality service's checks on all the current rows as one window.

The constraints come from the monitor's baseline exactly as the quality service gets them
(`vigil_detectors.quality.constraints.load_constraints`: ``spec.baseline``'s directory, else
the reference profiled by `vigil.baseline.compute_baseline`), and the verdict is
`vigil_detectors.quality.checks.check_window` on the decoded current bodies — the service's
own function, so a report and the service agree on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

#: Column order of the report's quality table (per-feature checks; extraColumns is its own row).
COLUMNS = ("completeness", "dataType", "range", "categories", "missingColumns")


@dataclass
class QualityPart:
    instances: int
    #: feature -> check -> {"count", "ratio", "allowed", "violated"} (checks that apply only)
    cells: dict[str, dict[str, dict[str, Any]]]
    violations: list[dict[str, Any]]  # SageMaker-style: feature_name, constraint_check_type, description, …
    baseline: Optional[str]  # the baseline directory, None when profiled from the reference here
    extra_names: dict[str, int]

    @property
    def features_violated(self) -> list[str]:
        return list(dict.fromkeys(v["feature_name"] for v in self.violations))

    def violated(self, feature: str) -> bool:
        return any(c["violated"] for c in self.cells.get(feature, {}).values())


def quality_part(settings: Any, decoded: list) -> QualityPart:
    """Check the decoded current bodies against the constraints of a quality service with `settings`."""
    from vigil_detectors.quality.checks import check_window
    from vigil_detectors.quality.constraints import load_constraints

    loaded = load_constraints(settings, write=False)
    report = check_window(list(decoded), loaded.compiled)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for (feature, check), entry in report.checks.items():
        cells.setdefault(feature, {})[check] = entry
    return QualityPart(report.instances, cells, list(report.violations), None if loaded.profiled else loaded.directory,
                       dict(report.extra_names))
