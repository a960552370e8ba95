"""`vigil train`: fit each detector's artifact from reference data and save it with the library's own saver.

One entry point, `train_component`, serves every way training is started:

- ``vigil train --component outlier --reference PATH --output DIR --options JSON
  [--feature-names JSON] [--categorical JSON] [--model PATH|URL --model-format FMT --model-name NAME]``
  (the operator's training Job, and each `TrainStep` `vigil up` runs as a subprocess);
- ``vigil train monitor.yaml`` (the CLI turns the monitor into those same steps).

It reads the reference table with `vigil.data.load_table` (CSV, Parquet or .npy; columns
picked by the schema's feature names) and hands the array to the detector's trainer:

- outlier: `vigil_detectors.outlier.train.train_outlier` — alibi-detect `OutlierVAE`,
  saved with `alibi_detect.saving.save_detector`;
- drift: `train_drift` below — the drift service's own `fit_statistic` (KS, chi-squared,
  PSI, … on NumPy/SciPy), saved as ``drift.json`` + ``reference.npy``; with
  ``preprocess: {type: uae}`` an alibi-detect `KSDrift` carrying a seeded `UAE`
  (`vigil_detectors.drift.preprocess`), saved with alibi-detect's saver;
- explainer: `vigil_detectors.explainer.train.train_explainer` — alibi `AnchorTabular`
  fitted against the model, saved with `alibi.saving.save_explainer`.

Every trainer writes a complete directory that the detector service loads with the
matching ``load_*`` function; nothing is pickled. TensorFlow is imported
only inside the trainers that need it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vigil import components
from vigil.spec import categorical_index, categorical_indices

Progress = Callable[[str], None]


def say(message: str) -> None:
    """Default progress: a line on stdout, flushed (a Job's log shows it as it happens)."""
    print(message, flush=True)

Categorical = Mapping[Union[str, int], Any]



def save_atomically(save: Callable[[Path], None], out_dir: Path) -> Path:
    """Write into a fresh sibling directory, then swap it in: a crash never leaves half an artifact."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the detector may run as another user
    try:
        save(tmp)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            return out_dir
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        try:
            os.replace(out_dir, old)
        except OSError:  # out_dir is a mount point (a volume mounted right there): replace its contents
            for child in out_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            for child in tmp.iterdir():
                os.replace(child, out_dir / child.name)
            tmp.rmdir()
            return out_dir
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def train_drift(x_ref: np.ndarray, options: Optional[dict], out_dir, *,
                categorical: Optional[Categorical] = None, feature_names: Optional[Sequence[str]] = None,
                model: Optional[str] = None, model_format: Optional[str] = None, model_name: Optional[str] = None,
                progress: Progress = say) -> Path:
    """Fit the drift check the drift service uses (its statistics, categoricals declared or inferred) and save it.

    `options` is the ``spec.detectors.drift`` block: ``type`` (default statistic), ``statistics``
    (``{feature name: statistic}``), ``pValue``, ``correction``.
    """
    options = options or {}
    p_value = float(options.get("pValue", options.get("p_value", 0.05)))
    correction = str(options.get("correction", "bonferroni"))
    if options.get("preprocess"):
        return train_drift_preprocess(x_ref, options["preprocess"], out_dir, p_value=p_value, correction=correction,
                                      kind=str(options.get("type", "ks")), model=model, model_format=model_format,
                                      model_name=model_name, progress=progress)
    from vigil_detectors.drift.statistics import fit_statistic

    kind = str(options.get("type", "ks"))
    names = list(feature_names or [])
    overrides = {categorical_index(f, names): str(t) for f, t in (options.get("statistics") or {}).items()}
    cats = categorical_indices(categorical, names)
    progress(f"drift: fitting {kind} on {x_ref.shape[0]} rows x {x_ref.shape[1]} features "
             f"(p-value {p_value}, {correction}{f', {len(cats)} categorical' if cats else ''})")
    statistic = fit_statistic(x_ref, p_value=p_value, correction=correction, categorical=cats, kind=kind,
                              statistics=overrides)
    if statistic.inferred:
        progress("drift: tested as categorical (at most 10 distinct values in the reference): "
                 + ", ".join(names[i] if names else str(i) for i in statistic.inferred))
    out = save_atomically(lambda tmp: statistic.save(str(tmp)), Path(out_dir))
    progress(f"drift: saved to {out}")
    return out


def train_drift_preprocess(x_ref: np.ndarray, preprocess: dict, out_dir, *, p_value: float, correction: str,
                           kind: str = "ks", model: Optional[str] = None, model_format: Optional[str] = None,
                           model_name: Optional[str] = None, progress: Progress = say) -> Path:
    """``drift.preprocess`` (`vigil_detectors.drift.preprocess`): ``{type: uae, encodingDim, seed}`` — alibi-detect's
    `KSDrift` with a seeded, untrained `UAE` as its ``preprocess_fn``, saved with alibi-detect's saver;
    ``{type: model-output}`` — the drift suite fitted on the model's class probabilities for the reference.

    `x_ref` is (n, *shape) for a tensor schema (rows of features: the UAE's dense encoder on each row)."""
    from vigil_detectors.drift import preprocess as pre
    from vigil_detectors.drift.statistics import fit_statistic

    if preprocess.get("type") == "model-output":
        if not model:
            raise ValueError("model-output drift is fitted on the model's outputs: give a model file or V2 URL")
        progress(f"drift: asking the model {model} for class probabilities of {x_ref.shape[0]} reference instances")
        proba = pre.model_outputs(x_ref, model, model_format, model_name)
        suite = fit_statistic(proba, p_value=p_value, correction=correction, kind=kind)

        def save(tmp: Path) -> None:
            suite.save(str(tmp))
            pre.write_config(tmp, {"type": "model-output", "classes": int(proba.shape[1]),
                                   "referenceSize": int(proba.shape[0])})

        out = save_atomically(save, Path(out_dir))
        progress(f"drift: {proba.shape[1]} class probabilities tested per window; saved to {out}")
        return out
    if preprocess.get("type") != "uae":
        raise ValueError(f"unknown drift preprocess type {preprocess.get('type')!r} (uae, model-output)")
    dim, seed = int(preprocess.get("encodingDim", 32)), int(preprocess.get("seed", 0))
    shape = list(x_ref.shape[1:])
    progress(f"drift: building a UAE (seed {seed}) encoding {shape} instances to {dim} dimensions and encoding "
             f"{x_ref.shape[0]} reference instances (KS per dimension, p-value {p_value}, {correction})")
    detector = pre.fit_uae(x_ref, encoding_dim=dim, seed=seed, p_value=p_value, correction=correction)
    out = save_atomically(lambda tmp: pre.save_uae(detector, tmp, shape=shape, encoding_dim=dim, seed=seed),
                          Path(out_dir))
    progress(f"drift: saved to {out}")
    return out


def train_array(component: str, x_ref: np.ndarray, options: Optional[dict], out_dir, *,
                feature_names: Optional[Sequence[str]] = None, categorical: Optional[Categorical] = None,
                shape: Optional[Sequence[int]] = None, model: Optional[str] = None,
                model_format: Optional[str] = None, model_name: Optional[str] = None,
                progress: Progress = say) -> Path:
    """Fit `component` on an in-memory reference array and save it to `out_dir`.

    With `shape` (a tensor schema) `x_ref` is (n, *shape); otherwise (rows, features)."""
    if shape is not None and tuple(x_ref.shape[1:]) != tuple(shape):
        raise ValueError(f"reference instances have shape {list(x_ref.shape[1:])}, but the schema's shape is "
                         f"{list(shape)}")
    if component == "outlier":
        from vigil_detectors.outlier.train import train_outlier

        return train_outlier(x_ref, options, out_dir, feature_names=feature_names, progress=progress)
    if component == "drift":
        return train_drift(x_ref, options, out_dir, categorical=categorical, feature_names=feature_names,
                           model=model, model_format=model_format, model_name=model_name, progress=progress)
    if component == "explainer":
        from vigil_detectors.explainer.train import train_explainer

        if not feature_names:
            feature_names = [f"f{i}" for i in range(x_ref.shape[1])]
        return train_explainer(x_ref, options, model, out_dir, feature_names, categorical,
                               model_format=model_format, model_name=model_name,
                               progress=lambda msg: progress(f"explainer: {msg}"))
    raise ValueError(f"cannot train {component!r}; one of {', '.join(components.trainable())}")


def train_component(component: str, reference: Union[str, Path], output: Union[str, Path],
                    options: Optional[dict] = None, *, feature_names: Optional[Sequence[str]] = None,
                    categorical: Optional[Categorical] = None, shape: Optional[Sequence[int]] = None,
                    model: Optional[str] = None, model_format: Optional[str] = None, model_name: Optional[str] = None,
                    progress: Progress = say) -> Path:
    """Read the reference table at `reference`, fit `component` and save it to `output`; returns `output`.

    `options` is the detector's block of the monitor spec (camelCase keys). `feature_names`
    picks and orders the reference columns (None: every column, in file order).
    `categorical` is the schema's block (``{feature: n categories or [values]}``); `model`
    a model file or V2 URL (explainer only). `shape` (a tensor schema): the reference is a .npy of
    shape [n, *shape].
    """
    from vigil.data import complete_rows, load_table

    if component not in components.trainable():
        raise ValueError(f"cannot train {component!r}; one of {', '.join(components.trainable())}")
    progress(f"{component}: reading reference data {reference}")
    if shape is not None:
        x_ref = load_table(str(reference), feature_names, shape=shape)
        progress(f"{component}: {x_ref.shape[0]} instances of shape {list(x_ref.shape[1:])}")
    else:
        x_ref, dropped = complete_rows(load_table(str(reference), feature_names, categorical, missing="keep"))
        progress(f"{component}: {x_ref.shape[0]} rows x {x_ref.shape[1]} features"
                 + (f" ({dropped} row{'s' * (dropped != 1)} holding a missing value dropped)" if dropped else ""))
    return train_array(component, x_ref, options, output, feature_names=feature_names, categorical=categorical,
                       shape=shape,
                       model=model, model_format=model_format, model_name=model_name, progress=progress)
