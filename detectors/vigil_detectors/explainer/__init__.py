"""Anchor explainer service: alibi `AnchorTabular` explanations of the model's predictions.

`predictor` calls the model server as a black box over the V2 protocol, `train` fits and
saves an explainer with alibi's own `save_explainer`, `detector` loads it and serves
`POST /explain` (and optionally explains a sampled share of request events), and
`service.create_app()` is what `vigil serve explainer` runs. alibi (and so TensorFlow) is
imported only when an explainer is trained or loaded.
"""

import os

# alibi imports TensorFlow; keep tf.keras on Keras 2 like every other Vigil process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
