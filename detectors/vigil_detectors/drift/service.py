"""`vigil serve drift`: the drift detector as a FastAPI app, configured from `VIGIL_DRIFT_*`."""

from __future__ import annotations

from fastapi import FastAPI

from vigil_detectors.drift.detector import DriftDetector
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.frame import create_detector_app


def create_app(settings: DriftSettings | None = None) -> FastAPI:
    return create_detector_app(DriftDetector, settings or DriftSettings())
