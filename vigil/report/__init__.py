"""`vigil report`: one self-contained HTML page comparing current data with a monitor's reference.

- `source`: the monitor's drift settings (built by the same plan `vigil up` runs), its
  fitted drift check (`vigil_detectors.drift.fitting.fit_check`, the live service's) and
  the reference it was fitted on;
- `current`: the current data (CSV/Parquet/.npy file or capture directory) decoded by the
  services' own request decoder (`vigil.instances.decode_table`);
- `drift`: per feature the reference and current histograms on the drift service's bins
  (`vigil_detectors.drift.statistics.bins.reference_bins`) and the check's verdict;
- `html` and `svg`: the page (inline CSS and SVG, nothing fetched when it is opened).

`build_report` computes, `render` writes HTML; the CLI's ``vigil report`` calls both.
Nothing here imports TensorFlow for a tabular monitor.
"""

from vigil.report.build import Report, build_report
from vigil.report.html import render

__all__ = ["Report", "build_report", "render"]
