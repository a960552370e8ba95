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
- **Saved** with alibi-detect's `save_detector`; for rows, the same weights are also written as
  NumPy arrays (`vigil_detectors.outlier.dense`), so the service scores without TensorFlow.
- **Tensor instances** (``spec.schema.shape`` of rank 2 or 3: images): a convolutional
  encoder/decoder chosen from the shape (the layer rule in `vigil_detectors.outlier.conv`),
  inputs min-max scaled to [0, 1] over the reference (one scale for every pixel, stored like
  the tabular scaler), ``data_type="image"``, and an ELBO scale of 0.05 as in alibi-detect's
  CIFAR-10 example. The instance score is then the mean squared reconstruction error per
  pixel value (in that [0, 1] scale); the per-pixel scores have the instance's shape.

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
#: the same for images, in the [0, 1] pixel scale (alibi-detect's CIFAR-10 example: 0.05)
IMAGE_ELBO_SCALE = 0.05


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


def build_conv_vae(shape: Sequence[int], latent_dim: int, samples: int):
    """An untrained image `OutlierVAE` with the encoder/decoder of `vigil_detectors.outlier.conv`."""
    tf = import_tensorflow()
    from alibi_detect.od import OutlierVAE

    from vigil_detectors.outlier import conv

    encoder, decoder = conv.build(tf, shape, latent_dim)
    return OutlierVAE(threshold=0.0, encoder_net=encoder, decoder_net=decoder, latent_dim=latent_dim,
                      samples=samples, data_type="image")


def _loss(od, x: np.ndarray, sim: float = ELBO_SCALE) -> float:
    """alibi-detect's training objective (ELBO + the VAE's KL term) on a sample of the reference data."""
    from alibi_detect.models.tensorflow.losses import elbo

    recon = od.vae(x)
    return float(elbo(x, recon, sim=sim) + sum(od.vae.losses))


def train_outlier(x_ref: np.ndarray, options: Optional[dict], out_dir, *,
                  feature_names: Optional[Sequence[str]] = None, progress: Progress = say) -> Path:
    """Fit an `OutlierVAE` on `x_ref` (rows, features), or (n, H, W[, C]) images, and save it to `out_dir`;
    returns `out_dir`.

    `progress` gets one line per step and per epoch (at most ~30 epoch lines).
    """
    options = options or {}
    x = np.asarray(x_ref, dtype=np.float64)
    if x.ndim < 2 or x.ndim > 4 or x.shape[0] < 2:
        raise ValueError(f"outlier training needs a table (rows, features) or images (n, H, W[, C]) with at least "
                         f"2 instances, got shape {list(x.shape)}")
    image = x.ndim > 2
    n_rows, n_features = x.shape[0], int(np.prod(x.shape[1:]))
    if image:
        feature_names = None
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

    if image:  # one [0, 1] min-max scale for every pixel value
        lo, hi = float(x.min()), float(x.max())
        mean, scale = np.array([lo]), np.array([hi - lo or 1.0])
        sim = IMAGE_ELBO_SCALE
    else:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        constant = [i for i, s in enumerate(scale) if s == 0]
        scale[scale == 0] = 1.0
        if constant:
            names = [feature_names[i] if feature_names else str(i) for i in constant]
            progress(f"outlier: note: constant feature(s) {', '.join(names)} in the reference data")
        sim = ELBO_SCALE
    xs = ((x - mean) / scale).astype(np.float32)

    tf = import_tensorflow()
    logging.getLogger("alibi_detect").setLevel(logging.ERROR)  # "no threshold yet", "directory created"
    tf.get_logger().setLevel(logging.ERROR)
    tf.keras.utils.set_random_seed(seed)
    if image:
        from vigil_detectors.outlier import conv

        progress(f"outlier: convolutional OutlierVAE on {n_rows} images of shape {list(x.shape[1:])} (scaled to "
                 f"[0, 1] from [{mean[0]:g}, {mean[0] + scale[0]:g}]); {conv.describe(x.shape[1:], latent_dim)}")
        od = build_conv_vae(x.shape[1:], latent_dim, samples)
    else:
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
               cov_elbo=dict(sim=sim))
        if every and (epoch % every == 0 or epoch == epochs):
            progress(f"outlier: epoch {epoch}/{epochs}  loss {_loss(od, check[:256] if image else check, sim):.4g}  "
                     f"({time.perf_counter() - started:.1f}s)")
    progress(f"outlier: trained in {time.perf_counter() - started:.1f}s")
    od.infer_threshold(xs, threshold_perc=percentile, batch_size=1024)  # bounded memory for images
    progress(f"outlier: threshold {od.threshold:.4g} (instance score at the {percentile:g}th percentile "
             "of the reference data)")
    od.meta[META_KEY] = {
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "feature_names": list(feature_names) if feature_names else None,
        "shape": list(x.shape[1:]) if image else None,
        "threshold_percentile": percentile,
        "reference_rows": n_rows,
    }

    from alibi_detect.saving import save_detector

    from vigil_detectors.outlier import dense

    def save(tmp: Path) -> None:
        save_detector(od, str(tmp))
        if not image and dense.export(od, tmp):  # the same weights as arrays: the service scores without TF
            progress(f"outlier: dense weights also written as {dense.WEIGHTS} (scored with NumPy)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf-keras: "HDF5 is a legacy format" (alibi-detect saves .h5)
        out = save_atomically(save, Path(out_dir))
    progress(f"outlier: saved to {out}")
    return out
