"""`create_app()` for `vigil serve explainer`: the anchor explainer in the detector frame,
configured from ``VIGIL_EXPLAINER_*`` environment variables."""

from __future__ import annotations

from typing import Optional

from fastapi import FastAPI

from vigil_detectors.explainer.detector import ExplainerDetector
from vigil_detectors.explainer.settings import ExplainerSettings
from vigil_detectors.frame import create_detector_app


def create_app(settings: Optional[ExplainerSettings] = None) -> FastAPI:
    return create_detector_app(ExplainerDetector, settings or ExplainerSettings())
