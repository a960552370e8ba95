"""A CIFAR-shaped task without downloads (DESIGN §6) for the image tests: `vigil.imagedata`'s textured
32×32×3 patches of scikit-learn's two sample photos, and the four corruptions of alibi-detect's
CIFAR-10 drift example at the strong settings these tests use.

`patches(n, seed)` gives (images in [0, 1] float32 of shape (n, 32, 32, 3), labels: 0 = the
china photo, 1 = the flower photo): `vigil.imagedata.patches(..., textured=True)`, the cutting
and the texture filter the image demo uses too. The corruptions here take one strength each
(CIFAR-10-C's, Hendrycks & Dietterich, at a strong severity; pixelation to 4×4), with NumPy,
SciPy and scikit-image only; `vigil.imagedata` has the severity-table versions.
"""

from __future__ import annotations

import numpy as np

from vigil import imagedata


def patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return imagedata.patches(n, seed, textured=True)


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
