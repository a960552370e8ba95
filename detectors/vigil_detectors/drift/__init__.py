"""Drift detector service: KS / chi-squared tests (alibi-detect) over tumbling or sliding windows.

- `settings`: `DriftSettings` (env prefix ``VIGIL_DRIFT_``)
- `statistics`: the pluggable statistic (alibi-detect `KSDrift` / `TabularDrift`)
- `window`: the window (ring buffer, tumbling/sliding/maxAge) and its crash-safe checkpoint
- `detector`: `DriftDetector`, the frame's `Detector` for drift
- `service`: `create_app()` for `vigil serve drift`
"""
