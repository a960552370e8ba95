"""Drift detector service: per-feature statistics (KS, chi-squared, PSI, …) over tumbling or sliding windows.

- `settings`: `DriftSettings` (env prefix ``VIGIL_DRIFT_``)
- `statistics`: the pluggable statistics, one module each, on NumPy/SciPy (and saved alibi-detect
  detectors as artifacts)
- `window`: the window (ring buffer, tumbling/sliding/maxAge) and its crash-safe checkpoint
- `detector`: `DriftDetector`, the frame's `Detector` for drift
- `service`: `create_app()` for `vigil serve drift`
"""
