"""`create_app()` for `vigil serve outlier`: the detector frame around `OutlierDetector`."""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI

from vigil_detectors.frame import create_detector_app
from vigil_detectors.outlier.detector import OutlierDetector
from vigil_detectors.outlier.settings import OutlierSettings


def create_app(settings: Optional[OutlierSettings] = None) -> FastAPI:
    return create_detector_app(OutlierDetector, settings or OutlierSettings())
