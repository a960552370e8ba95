"""`create_app()` for `vigil serve metrics`: the metrics detector in the detector frame,
configured from ``VIGIL_METRICS_*`` environment variables."""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI

from vigil_detectors.frame import create_detector_app
from vigil_detectors.metrics.detector import MetricsDetector
from vigil_detectors.metrics.settings import MetricsSettings


def create_app(settings: Optional[MetricsSettings] = None) -> FastAPI:
    return create_detector_app(MetricsDetector, settings or MetricsSettings())
