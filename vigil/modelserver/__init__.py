"""Vigil's model server: one model (scikit-learn, XGBoost or TensorFlow/Keras) over the
Open Inference Protocol V2 and the V1 ``{"instances": ...}`` body.

`settings` reads ``VIGIL_MODEL_*``, `loaders` turns a model file into a `LoadedModel`
with one vectorised call per request, `app.create_app` is the FastAPI service.
TensorFlow is imported only when the format is ``tensorflow``.
"""
