"""Fit an alibi-detect `OutlierVAE` on reference data and save it with alibi-detect's `save_detector`.

Design (what `vigil train` builds for ``detectors.outlier``):

- **Standardized features.** Each feature is scaled to mean 0 / std 1 on the reference
  data before training and scoring, so a feature measured in thousands does not drown
  one measured in fractions: the instance score is the mean squared reconstruction
  error in standard deviations², per feature and averaged over features. The scaler is
  stored in the detector's own metadata (``meta["vigil"]["scaler"]``), which
  `save_detector`/`load_detector` write and restore with the detector — no separate
  file, no pickles of ours. (The service applies it; see `scorer`.)
- **Architecture** sized from the number of features ``n``: encoder Dense(h1)-Dense(h2),
  decoder Dense(h2)-Dense(h1)-Dense(n) (linear output, since features are standardized),
  ReLU, with ``h1 = clip(4n, 16, 128)``, ``h2 = clip(2n, 8, 64)``; latent size
  ``latentDim`` (default 2). Training uses alibi-detect's ELBO loss with a fixed
  reconstruction scale of 0.1 (in standard deviations) and Adam, ``epochs`` epochs,
  batches of 64; each epoch's loss is reported as it trains.
- **Threshold**: alibi-detect's `infer_threshold` on the reference data at
  ``thresholdPercentile`` (default 95: about 5 % of reference-like traffic is flagged).
- Deterministic given ``seed`` (default 0).

Options are the monitor's ``detectors.outlier`` block (camelCase as in the spec, or
snake_case): ``latentDim``, ``epochs``, ``thresholdPercentile``, and optionally
``samples`` (latent samples per instance, default 10), ``batchSize``, ``seed``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from vigil.spec import OutlierSpec
from vigil_detectors.outlier.scorer import META_KEY, import_tensorflow
from vigil_detectors.train import Progress, save_atomically, say

#: std of the Gaussian reconstruction likelihood in the ELBO, in standard deviations of a feature
ELBO_SCALE = 0.1


def _opt(options: dict, camel: str, default):
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    for key in (camel, snake):
        if options.get(key) is not None:
            return options[key]
    return default


def hidden_sizes(n_features: int) -> tuple[int, int]:
    return int(np.clip(4 * n_features, 16, 128)), int(np.clip(2 * n_features, 8, 64))


def build_vae(n_features: int, latent_dim: int, samples: int):
    """An untrained `OutlierVAE` with the dense encoder/decoder described in the module docstring."""
    tf = import_tensorflow()
    from alibi_detect.od import OutlierVAE

    h1, h2 = hidden_sizes(n_features)
    layers = tf.keras.layers
    encoder = tf.keras.Sequential([layers.InputLayer(input_shape=(n_features,)),
                                   layers.Dense(h1, activation="relu"), layers.Dense(h2, activation="relu")])
    decoder = tf.keras.Sequential([layers.InputLayer(input_shape=(latent_dim,)),
                                   layers.Dense(h2, activation="relu"), layers.Dense(h1, activation="relu"),
                                   layers.Dense(n_features)])
    od = OutlierVAE(threshold=0.0, encoder_net=encoder, decoder_net=decoder, latent_dim=latent_dim,
                    samples=samples, data_type="tabular")
    return od


def _loss(od, x: np.ndarray) -> float:
    """alibi-detect's training objective (ELBO + the VAE's KL term) on a sample of the reference data."""
    from alibi_detect.models.tensorflow.losses import elbo

    recon = od.vae(x)
    return float(elbo(x, recon, sim=ELBO_SCALE) + sum(od.vae.losses))


def train_outlier(x_ref: np.ndarray, options: Optional[dict], out_dir, *,
                  feature_names: Optional[Sequence[str]] = None, progress: Progress = say) -> Path:
    """Fit an `OutlierVAE` on `x_ref` (rows, features) and save it to `out_dir`; returns `out_dir`.

    `progress` gets one line per step and per epoch (at most ~30 epoch lines).
    """
    options = options or {}
    x = np.asarray(x_ref, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"outlier training needs a 2-D table with at least 2 rows, got shape {list(x.shape)}")
    n_rows, n_features = x.shape
    if feature_names is not None and len(feature_names) != n_features:
        raise ValueError(f"{len(feature_names)} feature names for {n_features} columns")
    spec = OutlierSpec.model_fields  # the spec block is the one home of these defaults
    latent_dim = int(_opt(options, "latentDim", spec["latent_dim"].default))
    epochs = int(_opt(options, "epochs", spec["epochs"].default))
    percentile = float(_opt(options, "thresholdPercentile", spec["threshold_percentile"].default))
    samples = int(_opt(options, "samples", 10))
    batch_size = int(_opt(options, "batchSize", 64))
    seed = int(_opt(options, "seed", 0))
    every = max(1, -(-epochs // 30))
    if not 0 < percentile < 100:
        raise ValueError(f"thresholdPercentile must be in (0, 100), got {percentile}")

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    constant = [i for i, s in enumerate(scale) if s == 0]
    scale[scale == 0] = 1.0
    if constant:
        names = [feature_names[i] if feature_names else str(i) for i in constant]
        progress(f"outlier: note: constant feature(s) {', '.join(names)} in the reference data")
    xs = ((x - mean) / scale).astype(np.float32)

    tf = import_tensorflow()
    logging.getLogger("alibi_detect").setLevel(logging.ERROR)  # "no threshold yet", "directory created"
    tf.get_logger().setLevel(logging.ERROR)
    tf.keras.utils.set_random_seed(seed)
    h1, h2 = hidden_sizes(n_features)
    progress(f"outlier: OutlierVAE on {n_rows} rows x {n_features} features (standardized); "
             f"encoder {n_features}-{h1}-{h2}, latent {latent_dim}, decoder {latent_dim}-{h2}-{h1}-{n_features}")
    od = build_vae(n_features, latent_dim, samples)
    progress(f"outlier: training {epochs} epochs, batch size {batch_size}")
    started = time.perf_counter()
    # One alibi-detect `fit` per epoch with one optimizer instance (its state carries over, so this is
    # the same training as fit(epochs=N)), to report each epoch's loss as a plain line: alibi's own
    # progress bar only reads well on a terminal, not in a Job's log.
    optimizer = tf.keras.optimizers.Adam()
    check = xs[np.random.default_rng(seed).permutation(n_rows)[:1024]]
    for epoch in range(1, epochs + 1):
        od.fit(xs, optimizer=optimizer, epochs=1, batch_size=batch_size, verbose=False,
               cov_elbo=dict(sim=ELBO_SCALE))
        if every and (epoch % every == 0 or epoch == epochs):
            progress(f"outlier: epoch {epoch}/{epochs}  loss {_loss(od, check):.4g}  "
                     f"({time.perf_counter() - started:.1f}s)")
    progress(f"outlier: trained in {time.perf_counter() - started:.1f}s")
    od.infer_threshold(xs, threshold_perc=percentile)
    progress(f"outlier: threshold {od.threshold:.4g} (instance score at the {percentile:g}th percentile "
             "of the reference data)")
    od.meta[META_KEY] = {
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "feature_names": list(feature_names) if feature_names else None,
        "threshold_percentile": percentile,
        "reference_rows": n_rows,
    }

    from alibi_detect.saving import save_detector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras: "HDF5 is a legacy format" (alibi-detect saves .h5)
        out = save_atomically(lambda tmp: save_detector(od, str(tmp)), Path(out_dir))
    progress(f"outlier: saved to {out}")
    return out
