"""The service frame every detector runs in (see `base.Detector` for the contract).

`create_detector_app` (FastAPI, CloudEvents) is imported on first use, so the settings
classes (`vigil_detectors.<name>.settings`) stay light enough for the planner and the
operator to import.
"""

from vigil_detectors.frame.base import Detector, DetectorError, InferenceEvent
from vigil_detectors.frame.settings import DetectorSettings

__all__ = ["Detector", "DetectorError", "InferenceEvent", "DetectorSettings", "create_detector_app"]


def __getattr__(name: str):
    if name == "create_detector_app":
        from vigil_detectors.frame.app import create_detector_app

        return create_detector_app
    raise AttributeError(name)
