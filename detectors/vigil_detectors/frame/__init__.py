"""The service frame every detector runs in (see `base.Detector` for the contract)."""

from vigil_detectors.frame.base import Detector, DetectorError, InferenceEvent
from vigil_detectors.frame.settings import DetectorSettings
from vigil_detectors.frame.app import create_detector_app

__all__ = ["Detector", "DetectorError", "InferenceEvent", "DetectorSettings", "create_detector_app"]
