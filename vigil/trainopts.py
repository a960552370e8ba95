"""What `vigil train` checks and where it writes, kept out of the argument parser.

- `validate_options(component, options)`: `--options` JSON is a detector block of the spec
  (`spec.detectors.<component>`), so the spec's own block model parses it — a typo or a
  bad value is a `SpecError` naming the field, as it would be in a monitor file.
- `OutDirPlacement`: `vigil train monitor.yaml --out DIR` writes each detector to
  `DIR/<detector>` (a local placement whose artifacts live directly under DIR).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, cast

from pydantic import ValidationError

from vigil import spec as spec_module
from vigil.local import LocalPlacement
from vigil.plan import DEFAULT_BASE_PORT, Placement, Plan, build_plan
from vigil.spec import ModelMonitor, SpecError


def parse_json_option(flag: str, text: Optional[str], default: Any) -> Any:
    """A JSON command-line value, or a SpecError naming the flag."""
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(flag, f"not valid JSON: {exc}") from None


def validate_options(component: str, options: Any) -> dict:
    """`options` checked against the `spec.detectors.<component>` block; returned unchanged."""
    if not isinstance(options, dict):
        raise SpecError(f"detectors.{component}", "--options must be a JSON object (the detector block)")
    try:
        spec_module.DetectorsSpec.model_validate({component: options})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = spec_module._field_path(("detectors", *err["loc"]))
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise SpecError(field, msg) from None
    return options


class OutDirPlacement(LocalPlacement):
    """A local placement whose trained artifacts go to `<out>/<component>`."""

    def artifact_uri(self, component: str) -> str:
        return f"file://{self.workdir / component}"


def out_dir_plan(monitor: ModelMonitor, monitor_dir: Path, out: Path) -> tuple[Plan, LocalPlacement]:
    """The monitor's plan with every trained artifact under `out/<detector>`."""
    placement = OutDirPlacement(out, monitor_dir, DEFAULT_BASE_PORT)
    # LocalPlacement.path also takes None (vigil.local is not mypy-clean yet): as in local_plan
    return build_plan(monitor, cast(Placement, placement)), placement
