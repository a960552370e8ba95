"""Load a model file into a `LoadedModel` that scores a whole batch in one call.

- ``sklearn``: a joblib (or pickle) file of any estimator or Pipeline.
- ``xgboost``: a model saved with ``save_model`` (JSON or UBJSON), from the scikit-learn
  wrapper (``XGBClassifier`` / ``XGBRegressor``) or a plain ``Booster``. Classifier or
  regressor is read from the file: the wrapper's ``_estimator_type`` attribute, else
  the objective (``binary:*`` / ``multi:*`` are classifiers).
- ``tensorflow``: a SavedModel directory (its ``serving_default`` signature) or a Keras
  ``.keras`` / ``.h5`` file. TensorFlow is imported here and only here. Inputs may be rows
  of features or N-D tensors (an image classifier taking [n, 32, 32, 3]): `input_shape` is
  the shape of one instance when the model declares it; big batches are scored in chunks of
  `TF_CHUNK` instances so memory stays bounded.

A path may be a file or a directory holding one model file (``model.joblib``,
``model.json``, ``model.keras`` … are preferred when several are present).

`LoadedModel.predict(rows, want_proba)` returns ``(predict, predict_proba or None)``:
class labels for classifiers, values for regressors, and class scores when the model
has them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vigil.errors import VigilError

log = logging.getLogger("vigil.model")

PredictFn = Callable[[np.ndarray, bool], "tuple[np.ndarray, Optional[np.ndarray]]"]


class ModelLoadError(VigilError, RuntimeError):
    """The model file is missing, ambiguous or not a model of the declared format."""


@dataclass
class LoadedModel:
    format: str
    task: str  # classification | regression
    platform: str  # e.g. "sklearn/LogisticRegression"
    predict_fn: PredictFn
    n_features: Optional[int] = None
    has_proba: bool = False
    n_classes: Optional[int] = None
    #: the shape of ONE instance when the model takes N-D tensors and declares it fully (e.g. (32, 32, 3))
    input_shape: Optional[tuple[int, ...]] = None
    path: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, rows: np.ndarray, want_proba: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
        labels, proba = self.predict_fn(rows, want_proba and self.has_proba)
        return np.asarray(labels), (None if proba is None else np.asarray(proba, dtype=np.float64))

    @property
    def classifier(self) -> bool:
        return self.task == "classification"


def predict_datatype(values: np.ndarray, classifier: bool) -> str:
    """V2 datatype of the `predict` output: INT64 class labels, FP64 values, BYTES for string labels."""
    kind = values.dtype.kind
    if kind in "iub":
        return "INT64"
    if kind == "f":
        if classifier and values.size and np.all(np.mod(values, 1) == 0):
            return "INT64"
        return "FP64"
    return "BYTES"


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        raise ModelLoadError(f"model uri {uri!r} is not a local path; download it first (the plan maps "
                             "storage URIs to local paths)")
    return Path(uri).expanduser()


def _find(uri: str, preferred: tuple[str, ...], suffixes: tuple[str, ...]) -> Path:
    path = _local_path(uri)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} does not exist")
    for name in preferred:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"no model file ({', '.join(suffixes)}) in directory {str(path)!r}")
    raise ModelLoadError(f"several model files in {str(path)!r} ({', '.join(p.name for p in found)}); "
                         f"name one of them or call it {preferred[0]}")


def _names(names) -> Optional[list[str]]:
    """Feature names a model was fitted with (sklearn `feature_names_in_`, XGBoost's), if any."""
    return None if names is None or len(names) == 0 else [str(n) for n in names]


#: instances per TensorFlow call for big batches (activations of an image model grow with the batch)
TF_CHUNK = 256


def _tensor_shape(dims: Optional[list[Optional[int]]]) -> Optional[tuple[int, ...]]:
    """The instance shape of an N-D input (rank > 1 per instance) when every dimension is known."""
    if dims is None or len(dims) < 2 or any(d is None for d in dims):
        return None
    return tuple(int(d) for d in dims if d is not None)


def _chunked(call: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def run(rows: np.ndarray) -> np.ndarray:
        if len(rows) <= TF_CHUNK:
            return call(rows)
        return np.concatenate([call(rows[i:i + TF_CHUNK]) for i in range(0, len(rows), TF_CHUNK)])
    return run


def _instance_shape(shape) -> Optional[list[Optional[int]]]:
    """The shape of ONE instance (batch axis dropped) of a TensorFlow/Keras input, if known."""
    try:
        dims = list(shape)[1:]
    except (TypeError, ValueError):  # unknown rank
        return None
    return [None if d is None else int(d) for d in dims]


# -- scikit-learn ---------------------------------------------------------------------------------

def load_sklearn(uri: str, task: str = "auto") -> LoadedModel:
    import joblib
    from sklearn.base import is_classifier

    file = _find(uri, ("model.joblib", "model.pkl"), (".joblib", ".pkl", ".pickle", ".sav"))
    try:
        est = joblib.load(file)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a load error
        raise ModelLoadError(f"cannot load scikit-learn model from {str(file)!r}: {e}") from e
    if not hasattr(est, "predict"):
        raise ModelLoadError(f"{str(file)!r} holds a {type(est).__name__}, which has no predict()")
    if task == "auto":
        task = "classification" if is_classifier(est) else "regression"
    has_proba = task == "classification" and hasattr(est, "predict_proba")
    classes = getattr(est, "classes_", None)
    # Models fitted on DataFrames warn on every numpy call; rows arrive without names by design.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")

    def predict(rows: np.ndarray, want_proba: bool):
        labels = est.predict(rows)
        return labels, (est.predict_proba(rows) if want_proba else None)

    return LoadedModel(format="sklearn", task=task, platform=f"sklearn/{type(est).__name__}", predict_fn=predict,
                       n_features=getattr(est, "n_features_in_", None), has_proba=has_proba,
                       n_classes=None if classes is None else len(classes), path=str(file),
                       info={"classes": None if classes is None else np.asarray(classes).tolist(),
                             "feature_names": _names(getattr(est, "feature_names_in_", None))})


# -- XGBoost --------------------------------------------------------------------------------------

def load_xgboost(uri: str, task: str = "auto") -> LoadedModel:
    import xgboost as xgb

    file = _find(uri, ("model.json", "model.ubj"), (".json", ".ubj"))
    try:
        booster = xgb.Booster(model_file=str(file))
        config = json.loads(booster.save_config())
    except (xgb.core.XGBoostError, ValueError) as e:
        raise ModelLoadError(f"cannot load XGBoost model from {str(file)!r}: {e}") from e
    objective = config["learner"]["objective"]["name"]
    num_class = int(config["learner"]["learner_model_param"].get("num_class", "0") or 0)
    wrapper = json.loads(booster.attr("scikit_learn") or "{}").get("_estimator_type")
    if task == "auto":
        if wrapper in ("classifier", "regressor"):
            task = "classification" if wrapper == "classifier" else "regression"
        else:
            task = "classification" if objective.startswith(("binary:", "multi:")) else "regression"
    kind = "XGBClassifier" if wrapper == "classifier" else "XGBRegressor" if wrapper == "regressor" else "Booster"
    has_proba = task == "classification" and objective in ("multi:softprob", "binary:logistic", "binary:logitraw")

    def predict(rows: np.ndarray, want_proba: bool):
        out = np.asarray(booster.inplace_predict(rows, validate_features=False))
        if task == "regression":
            return out, None
        if objective == "multi:softprob":
            return out.argmax(axis=1), (out if want_proba else None)
        if objective in ("binary:logistic", "binary:logitraw"):
            p = out if objective == "binary:logistic" else 1.0 / (1.0 + np.exp(-out))
            return (p > 0.5).astype(np.int64), (np.column_stack([1.0 - p, p]) if want_proba else None)
        # multi:softmax, binary:hinge, or a regression objective served as classes: labels already
        return np.rint(out).astype(np.int64), None

    return LoadedModel(format="xgboost", task=task, platform=f"xgboost/{kind}", predict_fn=predict,
                       n_features=booster.num_features() or None, has_proba=has_proba,
                       n_classes=(num_class or 2) if task == "classification" else None, path=str(file),
                       info={"objective": objective, "feature_names": _names(booster.feature_names)})


# -- TensorFlow / Keras ---------------------------------------------------------------------------

def _scores_to_prediction(task: str):
    def convert(out: np.ndarray, want_proba: bool):
        out = np.asarray(out, dtype=np.float64)
        if task == "regression":
            return (out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out), None
        if out.ndim == 2 and out.shape[1] > 1:
            return out.argmax(axis=1), (out if want_proba else None)
        p = out.reshape(-1)  # one sigmoid unit: probability of class 1
        return (p > 0.5).astype(np.int64), (np.column_stack([1.0 - p, p]) if want_proba else None)
    return convert


def load_tensorflow(uri: str, task: str = "auto") -> LoadedModel:
    # Keep tf.keras on Keras 2 in every Vigil process (alibi-detect needs it); `.keras`
    # files from Keras 3 are loaded with the `keras` package itself below.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    path = _local_path(uri)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        call, n_features, n_out, kind = _saved_model(tf, path)
        file = path
    else:
        file = _find(uri, ("model.keras", "model.h5"), (".keras", ".h5"))
        call, n_features, n_out, kind = _keras_file(tf, file)
    if task == "auto":
        task = "classification" if (n_out or 1) > 1 else "regression"
    convert = _scores_to_prediction(task)
    run = _chunked(call)

    def predict(rows: np.ndarray, want_proba: bool):
        return convert(run(rows), want_proba)

    return LoadedModel(format="tensorflow", task=task, platform=f"tensorflow/{kind}", predict_fn=predict,
                       n_features=n_features, has_proba=task == "classification",
                       input_shape=_tensor_shape(getattr(call, "input_shape", None)),
                       n_classes=(max(n_out or 1, 2)) if task == "classification" else None, path=str(file),
                       info={"input_shape": getattr(call, "input_shape", None)})


def _saved_model(tf, path: Path):
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"cannot load SavedModel from {str(path)!r}: {e}") from e
    sigs = loaded.signatures
    if not sigs:
        raise ModelLoadError(f"SavedModel {str(path)!r} has no signatures to serve")
    sig = sigs["serving_default"] if "serving_default" in sigs else next(iter(sigs.values()))
    _, kwargs = sig.structured_input_signature
    if len(kwargs) != 1:
        raise ModelLoadError(f"SavedModel signature takes {len(kwargs)} inputs ({', '.join(kwargs)}); "
                             "only single-tensor inputs are served")
    in_name, spec = next(iter(kwargs.items()))
    outputs = sig.structured_outputs
    out_name = sorted(outputs)[0] if isinstance(outputs, dict) else None
    out_spec = outputs[out_name] if out_name else outputs
    n_features = spec.shape[-1] if spec.shape.rank == 2 else None
    n_out = out_spec.shape[-1] if out_spec.shape.rank == 2 else 1
    dtype = spec.dtype

    def call(rows: np.ndarray):
        result = sig(**{in_name: tf.constant(rows, dtype=dtype)})
        return (result[out_name] if out_name else result).numpy()

    # keep a reference: signatures die with the loaded object
    call.loaded = loaded  # type: ignore[attr-defined]
    call.input_shape = _instance_shape(spec.shape)  # type: ignore[attr-defined]
    return call, n_features, n_out, "SavedModel"


def _keras_file(tf, file: Path):
    errors = []
    model = None
    try:
        import keras  # Keras 3 reads the .keras files TF 2.16+ writes by default

        model = keras.saving.load_model(str(file), compile=False)
    except Exception as e:  # noqa: BLE001
        errors.append(f"keras: {e}")
        try:
            import tf_keras  # Keras 2 files

            model = tf_keras.models.load_model(str(file), compile=False)
        except Exception as e2:  # noqa: BLE001
            errors.append(f"tf_keras: {e2}")
    if model is None:
        raise ModelLoadError(f"cannot load Keras model from {str(file)!r}: {'; '.join(errors)}")
    in_shape = model.inputs[0].shape if len(model.inputs) == 1 else None
    if in_shape is None:
        raise ModelLoadError(f"Keras model {str(file)!r} has {len(model.inputs)} inputs; only one is served")
    out_shape = model.outputs[0].shape
    n_features = int(in_shape[-1]) if len(in_shape) == 2 and in_shape[-1] is not None else None
    n_out = int(out_shape[-1]) if len(out_shape) == 2 and out_shape[-1] is not None else 1
    dims = _instance_shape(in_shape)
    if n_features:
        signature = [tf.TensorSpec([None, n_features], tf.float32)]
    elif dims and all(d is not None for d in dims):  # an image model: one trace for every batch size
        signature = [tf.TensorSpec([None, *dims], tf.float32)]
    else:
        signature = None
    fn = tf.function(lambda x: model(x, training=False), input_signature=signature, reduce_retracing=True)

    def call(rows: np.ndarray):
        return fn(tf.constant(rows, dtype=tf.float32)).numpy()

    call.input_shape = dims  # type: ignore[attr-defined]

    return call, n_features, n_out, f"keras/{type(model).__name__}"


LOADERS = {"sklearn": load_sklearn, "xgboost": load_xgboost, "tensorflow": load_tensorflow}


def load_model(uri: str, fmt: str, task: str = "auto") -> LoadedModel:
    try:
        loader = LOADERS[fmt]
    except KeyError:
        raise ModelLoadError(f"unknown model format {fmt!r}; one of {', '.join(LOADERS)}") from None
    model = loader(uri, task)
    log.info("loaded %s model from %s (%s, %s features)", model.platform, model.path, model.task, model.n_features)
    return model
