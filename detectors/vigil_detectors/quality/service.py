"""`vigil serve quality`: the quality detector as a FastAPI app, configured from `VIGIL_QUALITY_*`."""

from __future__ import annotations

from fastapi import FastAPI

from vigil_detectors.frame import create_detector_app
from vigil_detectors.quality.detector import QualityDetector
from vigil_detectors.quality.settings import QualitySettings


def create_app(settings: QualitySettings | None = None) -> FastAPI:
    return create_detector_app(QualityDetector, settings or QualitySettings())
