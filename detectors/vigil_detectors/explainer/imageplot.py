"""An anchor-image explanation as a PNG: the image with its anchor superpixels highlighted.

`save_anchor_png(image, segments, anchor, path)` takes what ``POST /explain`` answers for
``type: anchor-image`` (the ``segments`` mask and the ``anchor`` segment ids) and the image
that was explained, and writes the image with the segments outside the anchor dimmed
towards grey and the anchor outlined in yellow, scaled up (nearest neighbour) so a 32×32
image is readable. PIL (a dependency of scikit-image, which alibi needs) writes the file;
`vigil demo --images` prints its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np

OUTLINE = np.array([1.0, 0.85, 0.0])  # yellow


def anchor_overlay(image: np.ndarray, segments: np.ndarray, anchor: Sequence[int], dim: float = 0.65) -> np.ndarray:
    """(H, W, 3) floats in [0, 1]: `image` with non-anchor segments blended `dim` of the way to grey and the
    anchor's boundary drawn in yellow. `image` may be (H, W), (H, W, 1) or (H, W, 3), in [0, 1] or [0, 255]."""
    from skimage.segmentation import find_boundaries

    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {list(np.shape(image))}")
    if img.max() > 1.0:
        img = img / 255.0
    mask = np.asarray(segments)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"segments mask {list(mask.shape)} does not match the image {list(img.shape[:2])}")
    inside = np.isin(mask, np.asarray(list(anchor), dtype=mask.dtype))
    out = img.copy()
    out[~inside] = (1 - dim) * img[~inside] + dim * 0.5
    out[find_boundaries(inside, mode="inner") & inside] = OUTLINE
    return np.clip(out, 0.0, 1.0)


def save_anchor_png(image: np.ndarray, segments: np.ndarray, anchor: Sequence[int], path: Union[str, Path],
                    scale: int = 8) -> Path:
    """Write the anchor overlay (`anchor_overlay`) as a PNG, each pixel `scale`×`scale`; returns the path."""
    from PIL import Image

    overlay = anchor_overlay(image, segments, anchor)
    big = np.repeat(np.repeat(overlay, scale, axis=0), scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((big * 255).round().astype(np.uint8), mode="RGB").save(path, format="PNG")
    return path
