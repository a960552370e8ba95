"""A CIFAR-shaped task without downloads (DESIGN §6): 32×32×3 patches cut from scikit-learn's two
sample photos, and the four corruptions of alibi-detect's CIFAR-10 drift example.

`patches(n, seed)` gives (images in [0, 1] float32 of shape (n, 32, 32, 3), labels: 0 = the
china photo, 1 = the flower photo), each patch at a random position of one photo, kept
only when it holds detail (mean absolute horizontal gradient above the median of all
positions: objects and foliage, not sky or bokeh — what a CIFAR image is like; a 32×32
crop of flat sky stays the same under blur or pixelation). The corruptions follow
CIFAR-10-C (Hendrycks & Dietterich), which the example uses, at a strong severity, with
NumPy, SciPy and scikit-image only.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SIDE = 32


@cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(img, dtype=np.float32) / 255.0 for img in load_sample_images().images)


def _cut(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    photos = _photos()
    labels = rng.integers(0, len(photos), n)
    out = np.empty((n, SIDE, SIDE, 3), dtype=np.float32)
    for i, label in enumerate(labels):
        photo = photos[label]
        y = rng.integers(0, photo.shape[0] - SIDE + 1)
        x = rng.integers(0, photo.shape[1] - SIDE + 1)
        out[i] = photo[y:y + SIDE, x:x + SIDE]
    return out, labels


def _detail(x: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))


@cache
def _median_detail() -> float:
    return float(np.median(_detail(_cut(np.random.default_rng(12345), 4000)[0])))


def patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    floor = _median_detail()
    images, labels = [], []
    while sum(len(i) for i in images) < n:
        x, y = _cut(rng, 2 * n)
        keep = _detail(x) > floor
        images.append(x[keep])
        labels.append(y[keep])
    return np.concatenate(images)[:n], np.concatenate(labels)[:n]


def gaussian_noise(x: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 1).astype(np.float32)


def motion_blur(x: np.ndarray, length: int = 11) -> np.ndarray:
    """Blur along one direction (horizontal): a line kernel of `length` pixels."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(x, size=length, axis=2, mode="nearest").astype(np.float32)


def brightness(x: np.ndarray, delta: float = 0.3) -> np.ndarray:
    """Raise the HSV value channel by `delta` (CIFAR-10-C's brightness)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0, 1)
    return hsv2rgb(hsv).astype(np.float32)


def pixelate(x: np.ndarray, factor: int = 8) -> np.ndarray:
    """Average `factor`×`factor` blocks and blow them back up (a 32×32 image shown at 4×4)."""
    n, h, w, c = x.shape
    blocks = x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return np.repeat(np.repeat(blocks, factor, axis=1), factor, axis=2).astype(np.float32)


CORRUPTIONS = {"gaussian_noise": gaussian_noise, "motion_blur": motion_blur, "brightness": brightness,
               "pixelate": pixelate}
