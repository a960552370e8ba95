"""Drift preprocessing: map each tensor instance to a small vector before the drift statistics see it (DESIGN §8).

``spec.detectors.drift.preprocess`` chooses it; tabular monitors need none.

- ``{type: uae, encodingDim: 32, seed: 0}``: alibi-detect's untrained autoencoder `UAE`
  applied with its `preprocess_drift`, as in alibi-detect's CIFAR-10 KS example. The
  encoder is built from the instance shape (`encoder_net`) with weights drawn from `seed`;
  `vigil train` fits an alibi-detect `KSDrift` with that ``preprocess_fn`` on the reference
  images and saves it with `alibi_detect.saving.save_detector` into ``<artifact>/uae``
  (the encoder's weights and the *encoded* reference), next to ``preprocess.json``. The
  drift service loads that directory back, so every restart encodes with the very same
  weights and gives the same verdicts.

  The service encodes each request's instances once, at ingest (`Preprocessor.__call__`):
  the window and its checkpoint hold ``encodingDim`` numbers per instance, not the image,
  and the window check is the drift suite's KS per encoded dimension with the monitor's
  Bonferroni/FDR correction over the ``encodingDim`` dimensions (`DriftSuite`, whose
  p-values equal alibi-detect's `KSDrift`; a test compares the two verdicts on images).

Encoder layers (`encoder_net`), for an instance of shape ``(H, W, C)``: the CIFAR-10
example's stack — ``Conv2D(64, 4, strides=2)``, ``Conv2D(128, 4, strides=2)``,
``Conv2D(512, 4, strides=2)`` (ReLU, 'same' padding), ``Flatten``, ``Dense(encodingDim)`` —
keeping only as many stride-2 convolutions as halve ``min(H, W)`` down to no less than 4
(32×32: all three, 8×8: one). Any other shape (vectors, grey 2-D arrays) gets the `UAE`'s
own dense encoder (``UAE(shape=..., enc_dim=encodingDim)``) on the flattened instance.

- ``{type: model-output}``: black-box shift detection (BBSD, Lipton et al. 2018; alibi-detect's
  "model uncertainty" examples) on the model's class probabilities: the drift service reads
  *response* events (`probabilities`: the V2 ``predict_proba`` output, or V1 ``predictions``
  of class scores) and tests each class's probability with KS, corrected over the classes;
  `vigil train` calls the model (a file or the monitored endpoint, `model_outputs`) on the
  reference and saves the drift suite fitted on those probabilities (``drift.json`` +
  ``reference.npy``) with ``preprocess.json``. No TensorFlow in the service.

TensorFlow and alibi-detect are imported by the functions of this module only, so the drift
service imports them only for a monitor whose artifact has a UAE preprocessing step.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger("vigil.drift")

#: The file that marks a drift artifact with a preprocessing step (and says which).
CONFIG = "preprocess.json"
#: Where the alibi-detect detector carrying the UAE is saved, inside the artifact.
UAE_DIR = "uae"
FORMAT = "vigil-drift-preprocess/v1"
#: Instances encoded per TensorFlow call (alibi-detect's `preprocess_drift` batch size).
BATCH_SIZE = 256


def is_preprocessed(path: str) -> bool:
    """Whether a drift artifact directory carries a preprocessing step."""
    return (Path(path) / CONFIG).is_file()


def read_config(path: str) -> dict:
    config = json.loads((Path(path) / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{Path(path) / CONFIG}: not a {FORMAT} file (format {config.get('format')!r})")
    if config.get("type") not in ("uae", "model-output"):
        raise ValueError(f"{Path(path) / CONFIG}: unknown preprocessing {config.get('type')!r}")
    return config


def write_config(out: Path, config: dict) -> None:
    (Path(out) / CONFIG).write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")


#: V2 output tensors that hold class probabilities, by name, in order of preference.
PROBABILITY_OUTPUTS = ("predict_proba", "probabilities", "probs", "scores")


def probabilities(body: Any) -> np.ndarray:
    """(n, classes) class probabilities from a response body: the V2 ``predict_proba`` output (or
    another 2-D output), V1 ``predictions`` of class scores. Labels alone are a 400 naming the fix."""
    from vigil.events import PayloadError, decode_outputs

    if isinstance(body, dict) and isinstance(body.get("outputs"), list):
        tensors = [t for t in body["outputs"] if isinstance(t, dict)]
        named = {t.get("name"): t for t in tensors}
        chosen = next((named[n] for n in PROBABILITY_OUTPUTS if n in named), None)
        if chosen is None:
            chosen = next((t for t in tensors if isinstance(t.get("shape"), list) and len(t["shape"]) == 2
                           and t["shape"][1] != 1), None)
        if chosen is None:
            raise PayloadError("bad_body", "model-output drift needs the model's class probabilities: the response "
                                           f"has no {PROBABILITY_OUTPUTS[0]} output (ask for it, or for all outputs)")
        body = {"outputs": [chosen]}
    scores = decode_outputs(body)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise PayloadError("bad_body", "model-output drift needs class probabilities (n x classes), got outputs of "
                                       f"shape {list(scores.shape)}")
    return scores


def model_outputs(x: np.ndarray, model: str, model_format: Optional[str] = None,
                  model_name: Optional[str] = None, batch: int = 256) -> np.ndarray:
    """The model's class probabilities for `x`: a model file (the model server's loader) or a V2 endpoint."""
    if model.startswith(("http://", "https://")):
        import httpx

        from vigil.events import v2_request

        url = f"{model.rstrip('/')}/v2/models/{model_name or 'model'}/infer"
        parts = []
        with httpx.Client(timeout=60) as client:
            for i in range(0, len(x), batch):
                body = v2_request(x[i:i + batch])
                body["outputs"] = [{"name": "predict_proba"}]
                r = client.post(url, json=body)
                if r.status_code != 200:
                    raise ValueError(f"model server answered {r.status_code}: {r.text[:300]}")
                parts.append(probabilities(r.json()))
        return np.concatenate(parts)
    from vigil.modelserver.loaders import load_model
    from vigil_detectors.explainer.train import _guess_format

    fmt = model_format or _guess_format(model)
    loaded = load_model(model, fmt)
    rows = np.asarray(x, dtype=np.float64)
    if rows.ndim > 2 and fmt != "tensorflow":  # as the model server: scikit-learn/XGBoost take tensors flattened
        rows = rows.reshape(len(rows), -1)
    proba = loaded.predict(rows, want_proba=True)[1]
    if proba is None:
        raise ValueError(f"model-output drift needs class probabilities; the model at {model} gives none")
    return proba


def _tensorflow():
    # Keras 2 (tf-keras) like every other Vigil process: alibi-detect's saving needs it.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def encoder_net(shape: Sequence[int], encoding_dim: int):
    """The UAE's encoder for instances of `shape` (see the module docstring), or None for the UAE's dense default."""
    tf = _tensorflow()
    from tensorflow.keras.layers import Conv2D, Dense, Flatten, InputLayer

    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or min(shape[:2]) < 8:
        return None
    layers: list[Any] = [InputLayer(input_shape=shape)]
    side = min(shape[:2])
    for filters in (64, 128, 512):
        if side // 2 < 4:
            break
        layers.append(Conv2D(filters, 4, strides=2, padding="same", activation=tf.nn.relu))
        side //= 2
    layers += [Flatten(), Dense(encoding_dim)]
    return tf.keras.Sequential(layers)


def build_uae(shape: Sequence[int], encoding_dim: int, seed: int):
    """An untrained alibi-detect `UAE` for instances of `shape`, its weights drawn from `seed`."""
    tf = _tensorflow()
    from alibi_detect.cd.tensorflow import UAE

    tf.keras.utils.set_random_seed(int(seed))
    net = encoder_net(shape, encoding_dim)
    if net is None:
        uae = UAE(shape=tuple(shape), enc_dim=int(encoding_dim))
    else:
        uae = UAE(encoder_net=net)
    uae(np.zeros((1, *shape), dtype=np.float32))  # build the weights now, from the seed just set
    return uae


def fit_uae(x_ref: np.ndarray, *, encoding_dim: int = 32, seed: int = 0, p_value: float = 0.05,
            correction: str = "bonferroni", batch_size: int = BATCH_SIZE):
    """alibi-detect's `KSDrift` on `x_ref` (n, *shape) with the UAE as ``preprocess_fn`` (the CIFAR-10 example)."""
    _tensorflow()
    from alibi_detect.cd import KSDrift
    from alibi_detect.cd.tensorflow import preprocess_drift

    x_ref = np.asarray(x_ref, dtype=np.float32)
    if x_ref.ndim < 2 or x_ref.shape[0] < 2:
        raise ValueError(f"reference data must hold at least 2 instances, got shape {list(x_ref.shape)}")
    uae = build_uae(x_ref.shape[1:], encoding_dim, seed)
    fn = partial(preprocess_drift, model=uae, batch_size=int(batch_size))
    return KSDrift(x_ref, p_val=p_value, correction=correction, preprocess_fn=fn, preprocess_at_init=True)


def save_uae(detector, out: Path, *, shape: Sequence[int], encoding_dim: int, seed: int) -> None:
    """Write the artifact: ``preprocess.json`` and the detector (UAE weights, encoded reference) in ``uae/``."""
    from alibi_detect.saving import save_detector

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_detector(detector, str(out / UAE_DIR))
    write_config(out, {"type": "uae", "encodingDim": int(encoding_dim), "seed": int(seed),
                       "shape": [int(d) for d in shape], "referenceSize": int(len(detector.x_ref))})


class Preprocessor:
    """Encodes instances for the drift window: (n, *shape) or (n, prod(shape)) -> (n, encodingDim) float64."""

    kind = "uae"

    def __init__(self, detector, config: dict):
        self.detector = detector  # the loaded alibi-detect KSDrift (its x_ref is already encoded)
        self.fn = detector.preprocess_fn
        self.config = config
        self.shape: tuple[int, ...] = tuple(config["shape"])
        self.encoding_dim = int(config["encodingDim"])
        self.reference = np.asarray(detector.x_ref, dtype=np.float64)
        self.feature_names = [f"uae_{i}" for i in range(self.reference.shape[1])]

    def __call__(self, instances: np.ndarray) -> np.ndarray:
        x = np.asarray(instances)
        if tuple(x.shape[1:]) != self.shape:
            from vigil.events import PayloadError

            if x.ndim != 2 or x.shape[1] != int(np.prod(self.shape)):
                raise PayloadError("bad_shape", f"expected instances of shape {list(self.shape)}, "
                                                f"got {list(x.shape[1:])}")
            x = x.reshape((x.shape[0], *self.shape))  # flat rows of a tensor schema: the same numbers
        return np.asarray(self.fn(x.astype(np.float32)), dtype=np.float64)

    def describe(self) -> dict:
        return {"preprocess": {"type": self.kind, "encodingDim": self.encoding_dim, "seed": self.config.get("seed"),
                               "shape": list(self.shape)}}


def load_preprocessor(path: str) -> Preprocessor:
    """The preprocessing step of a drift artifact written by `save_uae`."""
    config = read_config(path)
    if config["type"] != "uae":
        raise ValueError(f"{Path(path) / CONFIG}: {config['type']} has no encoder to load")
    _tensorflow()
    from alibi_detect.saving import load_detector

    detector = load_detector(str(Path(path) / UAE_DIR))
    if config.get("shape") is None:
        raise ValueError(f"{Path(path) / CONFIG}: no instance shape recorded")
    log.info("drift preprocessing: UAE encoding %s instances to %d dimensions (seed %s)",
             config["shape"], config["encodingDim"], config.get("seed"))
    return Preprocessor(detector, config)


def reference_shape(x_ref: np.ndarray, shape: Optional[Sequence[int]]) -> np.ndarray:
    """`x_ref` as (n, *shape): a tensor reference as loaded, or flat rows reshaped to the schema's shape."""
    x = np.asarray(x_ref)
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    return x.reshape((x.shape[0], *[int(d) for d in shape]))
