"""Outlier detector service: alibi-detect `OutlierVAE` scores for every inference request.

`settings` (env ``VIGIL_OUTLIER_*``), `batcher` (concurrent events -> one model call),
`scorer` (the TensorFlow part: load the artifact, compiled VAE call), `detector` (the
`Detector` the frame serves: metrics, `/status`), `service` (`create_app`), and
`train` (fit and save an `OutlierVAE` from reference data, used by `vigil train`).
"""
