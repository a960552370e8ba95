"""Vigil's detector services: outlier (VAE), drift (KS), metrics (feedback), explainer (anchors).

Every detector implements the small `Detector` contract of `vigil_detectors.frame` and is
served by the same frame: CloudEvents in on `POST /`, `/status`, `/metrics`, `/healthz`,
`/readyz`. This package imports no TensorFlow at import time; detectors that need it import
it when they load their artifact.
"""
