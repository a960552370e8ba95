"""Scoring a dense (tabular) `OutlierVAE` with NumPy: the outlier service without TensorFlow.

A tabular VAE is a few small Dense layers; TensorFlow costs ~670 MB of RSS and ~0.1 ms per
call for them. `vigil train` therefore saves, next to alibi-detect's own artifact (which
stays the source of truth and still loads with `load_detector`), the same weights as plain
arrays in ``vigil-numpy.npz`` (`export`): every Dense layer of ``encoder_net``, the VAE's
``fc_mean``/``fc_log_var`` and ``decoder_net`` (kernel, bias, activation), the threshold, the
number of latent samples and the detector's metadata, with a fingerprint (SHA-256) of every
other file of the artifact. `DenseScorer.load` uses the arrays only if that fingerprint still
matches — an artifact re-saved or replaced by alibi-detect (or trained elsewhere, without the
file) is scored by TensorFlow (`scorer.VAEScorer`), and the reason is logged.

The score is alibi-detect's `OutlierVAE.predict` (``score_type`` mse): each row encoded
(``h = encoder_net(x)``, ``z_mean = fc_mean(h)``, ``z_log_var = fc_log_var(h)``), ``samples``
latent draws per row ``z = z_mean + exp(z_log_var / 2) · ε`` (ε standard normal, copies of a
row together as in the library's ``np.repeat``; the encoder's output is the same for every copy,
so it runs once per row), decoded, the feature score the mean over the draws of
``(x - reconstruction)²``, the instance score its mean over features. Everything is float32, as
in TensorFlow. tests/test_outlier_dense.py checks it against alibi-detect's ``predict`` with the
same latent noise (float32 rounding) and with the library's own draws (in distribution).

Only Dense layers with the activations in `ACTIVATIONS` are exported; any other network is left
to TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vigil_detectors.outlier.scorer import ScorerBase, local_path, unsupported

log = logging.getLogger("vigil.outlier")

#: the arrays' file inside an alibi-detect artifact directory
WEIGHTS = "vigil-numpy.npz"
#: what the file's layout is; a file of another version is not used
FORMAT = 1


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


#: Keras activation name -> NumPy (in place where it can be)
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x, "relu": _relu, "sigmoid": _sigmoid, "tanh": np.tanh,
}


class Unavailable(Exception):
    """The artifact has no usable NumPy weights (absent, stale, another format): score with TensorFlow."""


def fingerprint(directory: Path) -> str:
    """SHA-256 over the relative path and bytes of every file of the artifact but `WEIGHTS`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != WEIGHTS):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _dense(layer, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    config = layer.get_config()
    activation = config.get("activation", "linear")
    if type(layer).__name__ != "Dense" or not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise Unavailable(f"{where} has a {type(layer).__name__} layer ({activation!r}); only Dense layers with "
                          f"activations {sorted(ACTIVATIONS)} are scored with NumPy")
    if not config.get("use_bias", True):
        raise Unavailable(f"{where} has a Dense layer without a bias")
    kernel, bias = layer.get_weights()
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32), activation


def export(od, directory) -> Optional[Path]:
    """Write `WEIGHTS` for the fitted `OutlierVAE` `od` already saved to `directory` by alibi-detect's
    `save_detector` (call it right after); returns its path, or None (logged) for a network NumPy does
    not score."""
    directory = Path(directory)
    vae = od.vae
    try:
        if (why := unsupported(od)) is not None:
            raise Unavailable(why)
        layers = [(_dense(layer, "encoder_net"), "encoder") for layer in vae.encoder.encoder_net.layers]
        layers += [(_dense(vae.encoder.fc_mean, "fc_mean"), "mean"), (_dense(vae.encoder.fc_log_var, "fc_log_var"),
                                                                      "log_var")]
        layers += [(_dense(layer, "decoder_net"), "decoder") for layer in vae.decoder.decoder_net.layers]
    except Unavailable as why:
        log.info("outlier: no NumPy weights written (%s); the service scores this artifact with TensorFlow", why)
        return None
    arrays: dict[str, Any] = {}
    for i, ((kernel, bias, activation), part) in enumerate(layers):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = kernel, bias
        arrays[f"layer_{i}"] = np.array(f"{part}:{activation}")
    header = {"format": FORMAT, "layers": len(layers), "threshold": float(od.threshold),
              "samples": int(od.samples), "meta": od.meta, "fingerprint": fingerprint(directory)}
    arrays["header"] = np.array(json.dumps(header, default=str))
    path = directory / WEIGHTS
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


class _Layer:
    __slots__ = ("kernel", "bias", "activation")

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, activation: str):
        self.kernel, self.bias, self.activation = kernel, bias, ACTIVATIONS[activation]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.kernel
        y += self.bias
        return self.activation(y)


def _run(layers: Sequence[_Layer], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer(x)
    return x


class DenseScorer(ScorerBase):
    """`VAEScorer`'s contract (`prepare`, `score`, `threshold`, `meta`, `shape`) for a dense VAE, in NumPy."""

    engine = "numpy"

    def __init__(self, layers: Sequence[tuple[str, _Layer]], threshold: float, samples: int, meta: dict,
                 feature_names: Optional[Sequence[str]] = None):
        parts: dict[str, list[_Layer]] = {"encoder": [], "mean": [], "log_var": [], "decoder": []}
        for part, layer in layers:
            parts[part].append(layer)
        if not all(parts.values()):
            raise Unavailable(f"layers missing: {[p for p, found in parts.items() if not found]}")
        self.encoder, self.decoder = parts["encoder"], parts["decoder"]
        self.fc_mean, self.fc_log_var = parts["mean"][0], parts["log_var"][0]
        self.samples = int(samples)
        rng = np.random.default_rng()
        #: latent noise of shape (rows · samples, latent): standard normal (tests substitute a fixed one)
        self.noise: Callable[[tuple[int, int]], np.ndarray] = lambda shape: rng.standard_normal(shape, np.float32)
        self._setup(meta, threshold, (int(self.encoder[0].kernel.shape[0]),), feature_names)
        self.image = False

    @classmethod
    def load(cls, path: str, feature_names: Optional[Sequence[str]] = None) -> DenseScorer:
        """The arrays of `export` in artifact directory `path`; `Unavailable` when they cannot stand for it."""
        where = local_path(path)
        weights = where / WEIGHTS
        if not weights.is_file():
            raise Unavailable(f"no {WEIGHTS} in {where}")
        with np.load(weights, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise Unavailable(f"{weights} is format {header.get('format')}, this version reads {FORMAT}")
            if header.get("fingerprint") != fingerprint(where):
                raise Unavailable(f"{weights} was written for other contents of {where} (re-saved since)")
            layers = []
            for i in range(int(header["layers"])):
                part, activation = str(data[f"layer_{i}"]).split(":")
                layers.append((part, _Layer(data[f"kernel_{i}"], data[f"bias_{i}"], activation)))
        return cls(layers, header["threshold"], header["samples"], header["meta"], feature_names)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = _run(self.encoder, x)
        return self.fc_mean(h), self.fc_log_var(h)

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(instance scores (n,), feature scores (n, n_features), is_outlier (n,)) for prepared float32 rows."""
        x = np.asarray(x, dtype=np.float32)
        n, samples = len(x), self.samples
        z_mean, z_log_var = self.encode(x)
        z_mean = np.repeat(z_mean, samples, axis=0)
        std = np.repeat(np.exp(np.float32(0.5) * z_log_var), samples, axis=0)
        z = z_mean + std * self.noise((n * samples, z_mean.shape[1]))
        recon = _run(self.decoder, z).reshape(n, samples, -1)
        error = recon - x[:, None, :]
        np.square(error, out=error)
        feature = error.mean(axis=1)
        instance = feature.mean(axis=1)
        return instance, feature, (instance > self._threshold).astype(int)
