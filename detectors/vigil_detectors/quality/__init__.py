"""Quality detector service: every instance checked against the baseline's constraints, per window (DESIGN §9).

- `checks`: the pure checks (`count`, `verdict`, `check_window`), shared with `vigil report`
- `settings`: `QualitySettings` (env prefix ``VIGIL_QUALITY_``)
- `constraints`: `load_constraints`, the constraints a service checks (baseline or profiled
  reference), shared with `vigil report`
- `window`: the tumbling window of check counts (size / maxAge)
- `detector`: `QualityDetector`, the frame's `Detector` for quality
- `service`: `create_app()` for `vigil serve quality`
"""
