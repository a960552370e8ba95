"""Scoring rows with an alibi-detect `OutlierVAE` artifact in TensorFlow (the service's TensorFlow part).

`ScorerBase` is what this scorer shares with `vigil_detectors.outlier.dense.DenseScorer`, which
scores dense (tabular) VAEs trained by `vigil train` in NumPy, without TensorFlow; the service
takes that one whenever the artifact allows (see `dense`).

`VAEScorer.load(path)` loads a detector saved by alibi-detect's `save_detector` with its
own `load_detector`. Scores are alibi-detect's `OutlierVAE.predict` (``score_type`` mse,
``outlier_perc`` 100, its default): each row repeated ``od.samples`` times, reconstructed
by the VAE (sampling the latent), the feature score the mean squared error over the
samples, the instance score the mean of the feature scores, an outlier above
``od.threshold``. `score` computes exactly that in ONE `tf.function` (repeat, VAE, squared
error, means), for batch sizes bounded to powers of two: calling the Keras model eagerly
on TF 2.18 + tf-keras leaks about 36 KB per call and costs ~4 ms per call, and alibi's
NumPy steps around the model call (repeat, reshape, sort) cost more than the model for
small batches. `score_library` is alibi-detect's own ``predict`` (with the VAE compiled the
same way, as ``od.vae``); tests/test_outlier.py checks the two agree on the same inputs.

Artifacts trained by `vigil train` carry a standardizer in the detector's own metadata
(``meta["vigil"]["scaler"]``, saved and restored by alibi-detect with the detector):
rows are scaled with it before scoring, so every feature weighs the same in the score
whatever its units. An artifact trained elsewhere (no such metadata) scores raw values,
exactly as alibi-detect would.

The VAE's input may be rows (``(n_features,)``) or tensors (images, ``(H, W, C)``): `shape` is
the shape of one instance, read from the saved encoder; per-feature scores then have that
shape too (per pixel).

**Tensors** (a conv VAE, whose cost is the network, per row) take a variant of that graph
(`_image_scores`): every copy of an image has the same encoding, so the encoder net,
``fc_mean`` and ``fc_log_var`` run once per image, their outputs are repeated ``samples``
times into the VAE's own ``Sampling`` layer (one draw per copy, in ``np.repeat``'s order, as
the library draws) and the decoder runs on every draw — about a quarter less work than the
whole VAE on every copy. The decoder's last transposed convolution (to the image's few channels,
the costliest layer on oneDNN) runs as the equivalent forward convolution
(`vigil_detectors.outlier.deconv`). Batches are padded more finely (`padded_images`: under 1/8 of the rows
wasted, where powers of two can double a conv batch's cost). Without this the library's own
``predict`` on 64 images spent as long in ``np.repeat`` and ``np.power(d, 2)`` (~100× slower
than ``np.square`` on this stack's numpy) as in the VAE. tests/test_tensors_scorer.py checks
it against `OutlierVAE.predict` with the same latent noise (equal to float32 rounding), with
zero noise on a padded batch, and with the library's own draws (in distribution).

TensorFlow is imported on first use with ``TF_USE_LEGACY_KERAS=1`` (Keras 2 via tf-keras),
which alibi-detect's VAE save/load needs on TF 2.18.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

#: where `vigil train` keeps its additions inside the detector's alibi-detect metadata
META_KEY = "vigil"
#: why an artifact without a threshold cannot be served (every scorer says it the same way)
NO_THRESHOLD = "the OutlierVAE has no threshold (fit it and call infer_threshold before saving)"


def import_tensorflow():
    """TensorFlow with Keras 2 (tf-keras); the env var must be set before the first import."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def configure_threads(threads: int) -> None:
    """Pin TF's thread pools (before any op runs); 0 leaves TensorFlow's defaults."""
    if threads <= 0:
        return
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process (tests, several apps)
        pass


def padded_size(n: int) -> int:
    """Rows per VAE call for n rows: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def padded_images(n: int) -> int:
    """Images per compiled call for n images: n rounded up to a multiple of an eighth of the
    largest power of two ≤ n (1..16 as they are, then 18, 20, …, 32, 36, 40, …, 64, 72, …) —
    fewer than 1/8 of the rows are padding, and there are at most eight distinct shapes per
    doubling of the batch size (bounded oneDNN memory, as `padded_size`)."""
    if n <= 8:
        return max(n, 1)
    step = (1 << (n.bit_length() - 1)) // 8
    return -(-n // step) * step


def local_path(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def unsupported(od) -> Optional[str]:
    """Why an `OutlierVAE` cannot be scored as alibi-detect's predict does here, or None."""
    if getattr(od, "score_type", "mse") != "mse":
        return f"OutlierVAE score_type {od.score_type!r} is not supported (alibi-detect scores mse)"
    if od.threshold is None:
        return NO_THRESHOLD
    return None


class ScorerBase:
    """What every scorer of an `OutlierVAE` artifact shares: the instance shape, the artifact's own
    standardizer and feature names (``meta["vigil"]``), the threshold, `prepare`. `VAEScorer` (TensorFlow)
    and `vigil_detectors.outlier.dense.DenseScorer` (NumPy) add `score`."""

    #: what scores: "tensorflow" or "numpy" (logged at load)
    engine = ""
    image = False

    def _setup(self, meta: dict, threshold: Optional[float], shape: Sequence[int],
               feature_names: Optional[Sequence[str]]) -> None:
        if threshold is None:
            raise ValueError(NO_THRESHOLD)
        self._threshold = float(threshold)
        self.meta: dict = meta
        if not shape or any(d is None for d in shape):
            raise ValueError(f"the VAE takes inputs of shape {list(shape)}; every dimension must be known")
        #: the shape of one instance: (n_features,) for rows, e.g. (32, 32, 3) for images
        self.shape: tuple[int, ...] = tuple(int(d) for d in shape)
        self.n_features = int(np.prod(self.shape))
        if len(self.shape) > 1:
            feature_names = None  # tensors have no named features
        if feature_names is not None and len(feature_names) != self.n_features:
            raise ValueError(f"the VAE was trained on {self.n_features} features but {len(feature_names)} "
                             f"feature names are configured")
        extra = meta.get(META_KEY) or {}
        scaler = extra.get("scaler")
        self.mean: Optional[np.ndarray]
        self.scale: Optional[np.ndarray]
        if scaler:
            self.mean = np.asarray(scaler["mean"], dtype=np.float64)
            self.scale = np.asarray(scaler["scale"], dtype=np.float64)
        else:
            self.mean = self.scale = None
        self.trained_features = extra.get("feature_names")

    @property
    def threshold(self) -> float:
        return self._threshold

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(instance scores (n,), feature scores (n, *shape), is_outlier (n,)) for prepared float32 rows."""
        raise NotImplementedError

    def prepare(self, rows: np.ndarray) -> np.ndarray:
        """float64 rows -> what the VAE was trained on (standardized if the artifact says so), float32."""
        x = np.asarray(rows, dtype=np.float64)
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        with np.errstate(over="ignore"):  # overflow gives inf, which the caller rejects
            return x.astype(np.float32)


class VAEScorer(ScorerBase):
    """Per-instance scores, per-feature scores and outlier flags for rows of float64 features
    (or a batch of tensor instances)."""

    engine = "tensorflow"

    def __init__(self, od, feature_names: Optional[Sequence[str]] = None):
        tf = import_tensorflow()
        from alibi_detect.od import OutlierVAE

        if not isinstance(od, OutlierVAE):
            raise TypeError(f"artifact holds a {type(od).__name__}, not an alibi-detect OutlierVAE")
        if (why := unsupported(od)) is not None:
            raise ValueError(why)
        self._setup(od.meta, od.threshold, tuple(od.vae.encoder.encoder_net.input_shape[1:]), feature_names)
        self.od = od
        self.model = od.vae  # the Keras VAE as loaded; od.vae becomes its compiled call
        model, samples, shape = self.model, int(od.samples), self.shape
        spec = [tf.TensorSpec([None, *shape], tf.float32)]
        od.vae = tf.function(lambda x: model(x, training=False), input_signature=spec)

        def scores(x):  # OutlierVAE.score (mse, outlier_perc 100) in one graph
            repeated = tf.repeat(x, samples, axis=0)
            error = tf.square(repeated - model(repeated, training=False))
            feature = tf.reduce_mean(tf.reshape(error, (-1, samples, *shape)), axis=1)
            return tf.reduce_mean(tf.reshape(feature, (tf.shape(feature)[0], -1)), axis=1), feature

        self.image = len(shape) > 1
        if self.image:
            from vigil_detectors.outlier.deconv import decoder_call

            self._decode = decoder_call(self.model.decoder)  # the last layer as a forward conv (see deconv)
        self._scores = tf.function(self._image_scores if self.image else scores, input_signature=spec)
        self.score(self.prepare(np.zeros((1, *self.shape))))  # trace once now, not on the first event

    @classmethod
    def load(cls, path: str, feature_names: Optional[Sequence[str]] = None) -> VAEScorer:
        from alibi_detect.saving import load_detector

        tf = import_tensorflow()
        tf.get_logger().setLevel(logging.ERROR)  # tf-keras: "no training configuration found" (inference only)
        where = local_path(path)
        if not where.is_dir():
            raise FileNotFoundError(f"outlier artifact {where} is not a directory saved by alibi-detect's "
                                    "save_detector (train one with `vigil train`)")
        return cls(load_detector(str(where)), feature_names)

    def _image_scores(self, x):
        """(Compiled.) `OutlierVAE.score` for a batch of tensor instances, each encoded once (module
        docstring): (instance scores, feature scores = mean over the draws of (x - reconstruction)²)."""
        tf = import_tensorflow()
        encoder, samples = self.model.encoder, int(self.od.samples)
        h = encoder.encoder_net(x)
        if len(h.shape) > 2:  # as EncoderVAE.call
            h = tf.reshape(h, [tf.shape(h)[0], -1])
        z_mean = tf.repeat(encoder.fc_mean(h), samples, axis=0)  # np.repeat's order: copies of a row together
        z_log_var = tf.repeat(encoder.fc_log_var(h), samples, axis=0)
        recon = self._decode(encoder.sampling((z_mean, z_log_var)))
        recon = tf.reshape(recon, tf.concat([[tf.shape(x)[0], samples], tf.shape(x)[1:]], axis=0))
        feature = tf.reduce_mean(tf.square(x[:, None] - recon), axis=1)
        return tf.reduce_mean(tf.reshape(feature, (tf.shape(feature)[0], -1)), axis=1), feature

    def _padded(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        size = padded_images(n) if self.image else padded_size(n)
        if size > n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), dtype=x.dtype)])
        return x

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(instance scores (n,), feature scores (n, *shape), is_outlier (n,)) for prepared float32 rows.

        The rows are padded with zeros up to the next power of two (images: `padded_images`) before
        the call and the padding's scores dropped (rows are scored independently, so this changes nothing
        else): TensorFlow/oneDNN keep some memory per distinct input shape, so bounding the
        shapes to 1, 2, 4, … bounds that memory to a few MB instead of ~0.4 MB for every
        batch size ever seen.
        """
        n = len(x)
        instance, feature = self._scores(self._padded(x))
        instance, feature = instance.numpy()[:n], feature.numpy()[:n]
        return instance, feature, (instance > self._threshold).astype(int)

    def score_library(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same through alibi-detect's own `OutlierVAE.predict` (the reference `score` is tested against)."""
        n = len(x)
        data = self.od.predict(self._padded(x), return_feature_score=True, return_instance_score=True)["data"]
        return data["instance_score"][:n], data["feature_score"][:n], data["is_outlier"][:n]
