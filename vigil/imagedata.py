"""CIFAR-shaped images without downloads (DESIGN §6): the image demo's, tests' and benchmark's data.

- `patches(n, seed)`: 32×32×3 patches (float32 in [0, 1]) cut at random places from the two
  colour photos scikit-learn ships (`sklearn.datasets.load_sample_images`: a temple in China and a
  flower), labelled by the photo they come from (`CLASSES`). Patches from the same photos at other
  random places are the same distribution: clean traffic. ``textured=True`` keeps only patches that
  hold detail (mean absolute horizontal gradient above the median over all positions: objects and
  foliage, not sky or bokeh — what a CIFAR image is like; a 32×32 crop of flat sky stays the same
  under blur or pixelation, so drift on such crops cannot be seen). The image demo and the image
  drift tests use textured patches.
- The four corruptions of alibi-detect's CIFAR-10 examples (CIFAR-10-C, Hendrycks & Dietterich), at
  severity 1..5, with NumPy/SciPy/scikit-image: `gaussian_noise`, `motion_blur`, `brightness`,
  `pixelate` (`CORRUPTIONS` maps their names to them). Severities follow CIFAR-10-C's tables; motion
  blur is a line kernel (SciPy) instead of ImageMagick's. `pixelate` also takes an explicit
  ``factor`` beyond the table (CIFAR-10-C's strongest, 0.65, is not detectable on these patches:
  the image demo uses 0.25).
- `train_classifier(x, y, path)`: a small Keras CNN for that task, saved where the model server
  loads it (``.h5``/``.keras`` file or a SavedModel directory). TensorFlow is imported only there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Optional, Union

import numpy as np

SHAPE = (32, 32, 3)
CLASSES = ("china", "flower")


@cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(img, dtype=np.float32) / 255.0 for img in load_sample_images().images)


def _cut(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    photos = _photos()
    y = rng.integers(0, len(photos), n)
    x = np.empty((n, size, size, 3), dtype=np.float32)
    for i, label in enumerate(y):
        img = photos[label]
        r = rng.integers(0, img.shape[0] - size + 1)
        c = rng.integers(0, img.shape[1] - size + 1)
        x[i] = img[r:r + size, c:c + size]
    return x, y.astype(np.int64)


def detail(x: np.ndarray) -> np.ndarray:
    """Per image: the mean absolute difference between horizontally adjacent pixels."""
    return np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))


@cache
def _median_detail(size: int) -> float:
    return float(np.median(detail(_cut(np.random.default_rng(12345), 4000, size)[0])))


def patches(n: int, seed: Union[int, np.random.Generator] = 0, size: int = SHAPE[0],
            textured: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`n` random size×size×3 patches and their labels (index into `CLASSES`), reproducible by `seed`
    (or drawn from a Generator); ``textured``: only patches whose `detail` is above the median."""
    rng = np.random.default_rng(seed)
    if not textured:
        return _cut(rng, n, size)
    floor = _median_detail(size)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    while sum(len(i) for i in images) < n:
        x, y = _cut(rng, 2 * n, size)
        keep = detail(x) > floor
        images.append(x[keep])
        labels.append(y[keep])
    return np.concatenate(images)[:n], np.concatenate(labels)[:n]


def _severity(table: tuple, severity: int):
    if not 1 <= severity <= len(table):
        raise ValueError(f"severity must be 1..{len(table)}, got {severity}")
    return table[severity - 1]


def gaussian_noise(x: np.ndarray, severity: int = 3, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise (CIFAR-10-C's std per severity), clipped to [0, 1]."""
    std = _severity((0.04, 0.06, 0.08, 0.09, 0.10), severity)
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0.0, std, x.shape), 0, 1).astype(np.float32)


def motion_blur(x: np.ndarray, severity: int = 3, seed: int = 0) -> np.ndarray:
    """Each image smeared along a line (length by severity, a random angle per image)."""
    from scipy import ndimage

    length = _severity((3, 5, 7, 9, 11), severity)
    rng = np.random.default_rng(seed)
    out = np.empty_like(x, dtype=np.float32)
    for i, img in enumerate(x):
        kernel = np.zeros((length, length), dtype=np.float32)
        kernel[length // 2, :] = 1.0
        kernel = ndimage.rotate(kernel, rng.uniform(-45, 45), reshape=False, order=1)
        kernel /= kernel.sum()
        for ch in range(img.shape[-1]):
            out[i, ..., ch] = ndimage.convolve(img[..., ch], kernel, mode="reflect")
    return np.clip(out, 0, 1)


def brightness(x: np.ndarray, severity: int = 3, seed: int = 0) -> np.ndarray:
    """Brighter images: CIFAR-10-C's shift of the HSV value channel (scikit-image colour conversion)."""
    from skimage.color import hsv2rgb, rgb2hsv

    shift = _severity((0.05, 0.1, 0.15, 0.2, 0.3), severity)
    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1).astype(np.float32)


def pixelate(x: np.ndarray, severity: int = 3, seed: int = 0, factor: Optional[float] = None) -> np.ndarray:
    """Down-sampled by CIFAR-10-C's factor for `severity` (or `factor`, in (0, 1]: 0.25 shows a 32×32
    image at 8×8) with anti-aliasing and back up with nearest neighbours (scikit-image)."""
    from skimage.transform import resize

    if factor is None:
        factor = _severity((0.95, 0.9, 0.85, 0.75, 0.65), severity)
    elif not 0 < factor <= 1:
        raise ValueError(f"pixelate factor must be in (0, 1], got {factor}")
    h, w = x.shape[1:3]
    small = (max(1, int(h * factor)), max(1, int(w * factor)))
    out = np.empty_like(x, dtype=np.float32)
    for i, img in enumerate(x):
        down = resize(img, (*small, img.shape[-1]), order=1, anti_aliasing=True)
        out[i] = resize(down, img.shape, order=0, anti_aliasing=False)
    return np.clip(out, 0, 1)


Corruption = Callable[..., np.ndarray]
CORRUPTIONS: dict[str, Corruption] = {"gaussian_noise": gaussian_noise, "motion_blur": motion_blur,
                                      "brightness": brightness, "pixelate": pixelate}


def train_classifier(x: np.ndarray, y: np.ndarray, path: Union[str, Path], epochs: int = 5, seed: int = 0) -> Path:
    """Fit a small CNN (conv 16 - pool - conv 32 - pool - dense 32 - softmax) on (x, y) and save it to `path`:
    a ``.h5`` or ``.keras`` file, or a SavedModel directory (any other name). Returns `path`."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    n_classes = int(y.max()) + 1
    model = tf.keras.Sequential([
        layers.InputLayer(input_shape=x.shape[1:]),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".h5", ".keras"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf-keras: "HDF5 is a legacy format"
            model.save(str(path))
    else:
        tf.saved_model.save(model, str(path))
    return path
