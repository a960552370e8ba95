"""A report's content, computed: the summary facts, the drift part and the quality part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from vigil.errors import VigilError
from vigil.instances import InputSchema
from vigil.report.current import load_current
from vigil.report.drift import DriftPart, drift_part
from vigil.report.quality import QualityPart, quality_part
from vigil.report.source import load_source


@dataclass
class Report:
    monitor: str
    namespace: str
    monitor_path: str
    current_path: str
    reference_rows: int
    current_rows: int
    current_events: int  # bodies read: 1 for a file, the captured requests of a capture directory
    current_kind: str  # "file" or "capture"
    created: str  # ISO time, UTC
    drift: DriftPart
    drift_configured: bool
    quality: Optional[QualityPart] = None
    quality_note: str = ""  # why there is no quality part


def _value_lists(monitor) -> dict[int, list]:
    schema = monitor.spec.schema_
    names = list(schema.feature_names)
    return {names.index(k): list(v) for k, v in schema.categorical.items() if isinstance(v, list)}


def build_report(monitor_path: str, current_path: str, workdir: Path,
                 say: Callable[[str], None] = lambda _msg: None) -> Report:
    """Fit the monitor's drift check, read the current data and compare them (`say`: progress lines)."""
    say(f"reading {monitor_path} and fitting its drift check from the reference …")
    source = load_source(monitor_path, workdir)
    settings = source.settings
    say(f"reference: {source.reference.shape[0]} rows × {source.reference.shape[1]} features; "
        f"reading current data {current_path} …")
    current = load_current(current_path, InputSchema.from_spec(source.monitor.spec.schema_))
    rows, skipped = current.drift_rows()
    say(f"current: {current.rows} rows" + (f" from {current.events} captured requests" if current.what == "capture"
                                           else "") + "; checking drift …")
    drift = drift_part(source.check, settings, source.reference, rows, skipped, _value_lists(source.monitor))
    say("checking data quality …")
    quality: Optional[QualityPart] = None
    try:
        quality = quality_part(source.quality_settings, current.decoded)
        note = "" if source.quality_configured else "The monitor has no quality detector: its defaults were used"
    except (VigilError, ValueError) as exc:  # a baseline that cannot be read or profiled: drift still stands
        note = f"not computed: {exc}"
        say(f"warning: data quality {note}")
    return Report(monitor=source.monitor.name, namespace=source.monitor.namespace, monitor_path=str(monitor_path),
                  current_path=str(current_path), reference_rows=int(source.reference.shape[0]),
                  current_rows=current.rows, current_events=current.events, current_kind=current.what,
                  created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                  drift=drift, drift_configured=source.drift_configured, quality=quality, quality_note=note)
