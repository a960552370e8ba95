"""Fit an alibi `AnchorTabular` explainer on reference data (or, ``type: anchor-image``, build an
`AnchorImage` for the reference's image shape) and save it with alibi's `save_explainer`
(the service loads it back with `load_explainer`).

The explainer needs the model while it fits (to check what the predictor returns). It is
either a local model file, loaded with the model server's own loader
(`vigil.modelserver.loaders.load_model`, so it behaves exactly like the served model), or a
running V2 endpoint (`http(s)://…`, called through `ModelServerPredictor`).

Categorical features of the monitor's schema are given to alibi as `categorical_names`
(their values in the data are category codes 0..n-1; the names are the schema's value list
when it has one, else the codes), so anchors on them read ``color = red`` instead of
being binned like numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vigil.spec import categorical_index

log = logging.getLogger(__name__)

#: How a model file's name tells its format when none is given.
_SUFFIX_FORMATS = {".joblib": "sklearn", ".pkl": "sklearn", ".pickle": "sklearn", ".sav": "sklearn",
                   ".json": "xgboost", ".ubj": "xgboost", ".keras": "tensorflow", ".h5": "tensorflow"}

#: anchor-image: how many reference images perturbed superpixels are drawn from (alibi's images_background).
BACKGROUND_IMAGES = 32

Categorical = Mapping[Union[str, int], Union[int, Sequence[Any], None]]


def categorical_names(categorical: Optional[Categorical], feature_names: Sequence[str],
                      x_ref: Optional[np.ndarray] = None) -> dict[int, list[str]]:
    """alibi's ``{column index: [category names]}`` from the schema's categorical block.

    Keys may be feature names or column indices (int or str, as `vigil.plan` passes them);
    values a number of categories, a list of category values, or None (count taken from
    the data: max code + 1).
    """
    out: dict[int, list[str]] = {}
    for key, cats in (categorical or {}).items():
        idx = categorical_index(key, feature_names)
        if isinstance(cats, (list, tuple)):
            names = [str(v) for v in cats]
        elif isinstance(cats, int):
            names = [str(v) for v in range(cats)]
        else:  # None: the count is taken from the data
            if x_ref is None:
                raise ValueError(f"number of categories of feature {feature_names[idx]!r} unknown")
            names = [str(v) for v in range(int(np.max(x_ref[:, idx])) + 1)]
        if len(names) < 1:
            raise ValueError(f"categorical feature {feature_names[idx]!r} has no categories")
        out[idx] = names
    return out


def model_predictor(model_path_or_url: str, model_format: Optional[str] = None, model_name: Optional[str] = None,
                    timeout: float = 10.0, schema: Optional[Any] = None) -> Callable[[np.ndarray], np.ndarray]:
    """rows -> class labels, from a model file (the model server's loader) or a V2 URL (`schema`, a
    `vigil.instances.InputSchema`: how coded rows are sent to it)."""
    target = str(model_path_or_url)
    if target.startswith(("http://", "https://")):
        from vigil_detectors.explainer.predictor import ModelServerPredictor

        predictor = ModelServerPredictor(target, model_name or "model", timeout=timeout, schema=schema)
        predictor.wait_ready(timeout)
        return predictor
    from vigil.modelserver.loaders import load_model

    fmt = model_format or _guess_format(target)
    model = load_model(target, fmt)
    if not model.classifier:
        raise ValueError(f"anchor explanations need a classifier; {model.platform} at {target} is a regressor")

    def predict(rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim > 2 and fmt != "tensorflow":  # as the model server: scikit-learn/XGBoost take tensors flattened
            x = x.reshape(len(x), -1)
        return model.predict(x, want_proba=False)[0]

    return predict


def _guess_format(path: str) -> str:
    p = Path(path.removeprefix("file://"))
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "tensorflow"
        files = [f for f in p.iterdir() if f.suffix in _SUFFIX_FORMATS]
        if len({_SUFFIX_FORMATS[f.suffix] for f in files}) == 1:
            return _SUFFIX_FORMATS[files[0].suffix]
    elif p.suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[p.suffix]
    raise ValueError(f"cannot tell the format of model {path!r}; give model_format (sklearn, xgboost, tensorflow)")


def train_explainer(x_ref: np.ndarray, options: Optional[Mapping[str, Any]], model_path_or_url: Optional[str],
                    out_dir: Union[str, Path], feature_names: Sequence[str], categorical: Optional[Categorical] = None,
                    *, model_format: Optional[str] = None, model_name: Optional[str] = None,
                    progress: Optional[Callable[[str], None]] = None) -> Path:
    """Fit `AnchorTabular` on `x_ref` (n, f) against the model and save it to `out_dir`.

    `options` is the monitor's explainer block (``threshold``, ``sampleRate`` …; optional
    ``discPercentiles`` for the numeric bins, ``seed``). `model_path_or_url` is a model file
    or directory (format from `model_format` or its suffix) or a V2 base URL (with
    `model_name`). `categorical` is the schema's block: ``{feature name or index: n
    categories or [values]}``. Returns the output directory.
    """
    say = progress or (lambda msg: log.info("%s", msg))
    options = dict(options or {})
    if options.get("type") == "anchor-image":
        return train_image_explainer(x_ref, options, model_path_or_url, out_dir, model_format=model_format,
                                     model_name=model_name, progress=say)
    x_ref = np.asarray(x_ref, dtype=np.float64)
    feature_names = [str(f) for f in feature_names]
    if x_ref.ndim != 2 or x_ref.shape[0] < 2:
        raise ValueError(f"reference data must be rows of features, got shape {list(x_ref.shape)}")
    if x_ref.shape[1] != len(feature_names):
        raise ValueError(f"reference data has {x_ref.shape[1]} columns but the schema names {len(feature_names)} features")
    if not model_path_or_url:
        raise ValueError("the explainer is fitted against the model: give a model file or a V2 endpoint URL")
    cat_names = categorical_names(categorical, feature_names, x_ref)
    for idx, names in cat_names.items():
        codes = x_ref[:, idx]
        if np.any(codes != np.round(codes)) or codes.min() < 0 or codes.max() >= len(names):
            raise ValueError(f"categorical feature {feature_names[idx]!r} must hold category codes "
                             f"0..{len(names) - 1} in the reference data")

    say(f"loading the model from {model_path_or_url}")
    from vigil.instances import InputSchema

    predictor = model_predictor(model_path_or_url, model_format or options.get("modelFormat"),
                                model_name or options.get("modelName"),
                                schema=InputSchema.from_settings(feature_names, categorical))
    say("importing alibi")
    from vigil.imports import keep_out

    with keep_out():  # a TensorFlow model is loaded by now; otherwise alibi needs no framework
        from alibi.explainers import AnchorTabular
        from alibi.saving import save_explainer

    say(f"fitting AnchorTabular on {x_ref.shape[0]} reference rows "
        f"({len(cat_names)} categorical of {len(feature_names)} features)")
    explainer = AnchorTabular(predictor, feature_names, categorical_names=cat_names or None, dtype=np.float64,
                              seed=options.get("seed"))
    explainer.fit(x_ref, disc_perc=tuple(options.get("discPercentiles", (25, 50, 75))))
    # alibi saves the explainer without its predictor; the sampler keeps its own reference,
    # which must not be pickled either (an HTTP client, a TF model): detach it first.
    explainer.reset_predictor(None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_explainer(explainer, out)
    close = getattr(predictor, "close", None)
    if close:
        close()
    say(f"saved the explainer to {out}")
    return out


def train_image_explainer(x_ref: np.ndarray, options: Mapping[str, Any], model_path_or_url: Optional[str],
                          out_dir: Union[str, Path], *, model_format: Optional[str] = None,
                          model_name: Optional[str] = None, progress: Callable[[str], None] = log.info) -> Path:
    """``type: anchor-image``: alibi `AnchorImage` for images of `x_ref`'s instance shape, saved with `save_explainer`.

    `options` (the explainer block): ``segmentationFn`` (slic | felzenszwalb | quickshift, default slic),
    ``segmentationKwargs`` (empty: alibi's defaults), ``seed``. `x_ref` (n, *shape) gives the shape and
    the background: up to `BACKGROUND_IMAGES` reference images (drawn with ``seed``, default 0) saved with the
    explainer as alibi's ``images_background``, so a perturbed superpixel shows the same region of
    another real image. (alibi's fallback, the superpixel's mean colour, keeps the colours a CNN reads:
    on a task told apart by colour every prediction then holds with no superpixel kept and every
    anchor is empty.) AnchorImage has nothing else to fit, but it calls the model once to check what
    it returns, so the model is needed here as for tabular data.
    """
    x_ref = np.asarray(x_ref)
    if x_ref.ndim not in (3, 4) or x_ref.shape[0] < 1:
        raise ValueError(f"anchor-image needs reference images of shape [n, H, W] or [n, H, W, C], got "
                         f"{list(x_ref.shape)} (set spec.schema.shape)")
    if not model_path_or_url:
        raise ValueError("the explainer is fitted against the model: give a model file or a V2 endpoint URL")
    shape = tuple(int(d) for d in x_ref.shape[1:])
    fn = str(options.get("segmentationFn", "slic"))
    kwargs = dict(options.get("segmentationKwargs") or {}) or None
    progress(f"loading the model from {model_path_or_url}")
    predictor = model_predictor(model_path_or_url, model_format or options.get("modelFormat"),
                                model_name or options.get("modelName"))
    progress("importing alibi")
    from alibi.explainers import AnchorImage
    from alibi.saving import save_explainer

    progress(f"building AnchorImage for {list(shape)} images ({fn} segmentation{f' {kwargs}' if kwargs else ''})")
    # the background is drawn with a fixed seed unless one is given: the same reference trains the same
    # explainer (a fresh draw per training moved the demo's anchors: 21 of 32 images of one class in one
    # draw, 14 in the next)
    pick = np.random.default_rng(options.get("seed", 0)).choice(len(x_ref), min(len(x_ref), BACKGROUND_IMAGES),
                                                                replace=False)
    background = np.asarray(x_ref[np.sort(pick)], dtype=np.float64)
    explainer = AnchorImage(predictor, image_shape=shape, dtype=np.float64, segmentation_fn=fn,
                            segmentation_kwargs=kwargs, images_background=background, seed=options.get("seed"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_explainer(explainer, out)  # without its predictor: the service gives it the model server's
    close = getattr(predictor, "close", None)
    if close:
        close()
    progress(f"saved the explainer to {out}")
    return out
