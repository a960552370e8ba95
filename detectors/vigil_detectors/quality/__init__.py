"""Quality detector service: every instance checked against the baseline's constraints, per window (DESIGN §9).

- `checks`: the pure checks (`count`, `verdict`, `check_window`), shared with `vigil report`
- `settings`: `QualitySettings` (env prefix ``VIGIL_QUALITY_``)
- `window`: the tumbling window of check counts (size / maxAge)
- `detector`: `QualityDetector`, the frame's `Detector` for quality
- `service`: `create_app()` for `vigil serve quality`
"""
