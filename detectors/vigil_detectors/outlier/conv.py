"""The convolutional encoder/decoder `vigil train` builds for tensor instances (``spec.schema.shape``).

The layer rule, from the instance shape ``(H, W, C)`` (a 2-D shape ``(H, W)`` is one channel):

- **Down-samplings** ``d``: the largest ``d ≤ 3`` such that ``2**d`` divides both H and W and the
  smaller side down-sampled is still at least 2 pixels (``min(H, W) / 2**d ≥ 2``); at least 1.
  32×32 → 3 (to 4×4, as in alibi-detect's CIFAR-10 VAE), 8×8 digits → 2 (to 2×2), 28×28 → 2.
- **Encoder**: ``d`` × ``Conv2D(f_i, 4, strides=2, padding="same", relu)`` with
  ``f_i = 16 · 2**i`` (16, 32, 64), then ``Flatten``; alibi-detect's `OutlierVAE` adds the dense
  layers to the latent space (``latentDim``).
- **Decoder**: ``Dense((H/2**d)·(W/2**d)·f_last, relu)``, ``Reshape``, then ``d - 1`` ×
  ``Conv2DTranspose(f_i, 4, strides=2, same, relu)`` in reverse filter order and a last
  ``Conv2DTranspose(C, 4, strides=2, same, sigmoid)`` back to ``(H, W, C)``.

That is alibi-detect's CIFAR-10 example (conv 64-128-512, latent 1024) scaled down about 8× in
filters so it trains in seconds on a CPU; ``latentDim`` and ``epochs`` come from the spec. Inputs
are min-max scaled to [0, 1] over the reference data (the sigmoid output's range), so an image
in 0..255 and one in 0..1 train the same; the scaler is stored in the detector's metadata.
TensorFlow is imported by the caller (`train`).
"""

from __future__ import annotations

from collections.abc import Sequence

#: filters of the i-th down-sampling
BASE_FILTERS = 16
MAX_DOWNSAMPLINGS = 3


def image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H, W, C)`` of an instance shape the conv VAE takes (rank 2 or 3), else ValueError."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 2:
        return dims[0], dims[1], 1
    if len(dims) == 3:
        return dims[0], dims[1], dims[2]
    raise ValueError(f"the convolutional VAE takes instances of shape [H, W] or [H, W, C], got {list(dims)}")


def downsamplings(height: int, width: int) -> int:
    """The number of stride-2 convolutions of the layer rule (module docstring)."""
    best = 0
    for d in range(1, MAX_DOWNSAMPLINGS + 1):
        step = 2 ** d
        if height % step == 0 and width % step == 0 and min(height, width) // step >= 2:
            best = d
    if best == 0:
        raise ValueError(f"an image of {height}×{width} cannot be down-sampled by 2 (both sides must be even and "
                         "at least 4)")
    return best


def filters(d: int) -> list[int]:
    return [BASE_FILTERS * 2 ** i for i in range(d)]


def describe(shape: Sequence[int], latent_dim: int) -> str:
    """One line naming the layers `build` makes, for training progress."""
    h, w, c = image_shape(shape)
    d = downsamplings(h, w)
    f = filters(d)
    top = f"{h // 2 ** d}x{w // 2 ** d}x{f[-1]}"
    return (f"encoder {h}x{w}x{c} -conv{'-conv'.join(map(str, f))}-> {top}, latent {latent_dim}, "
            f"decoder {latent_dim} -> {top} -deconv{'-deconv'.join(map(str, f[::-1][1:] + [c]))}-> {h}x{w}x{c}")


def build(tf, shape: Sequence[int], latent_dim: int):
    """(encoder_net, decoder_net) Keras models for `OutlierVAE` (``data_type="image"``)."""
    h, w, c = image_shape(shape)
    d = downsamplings(h, w)
    f = filters(d)
    layers = tf.keras.layers
    enc = [layers.InputLayer(input_shape=tuple(int(s) for s in shape))]
    if len(shape) == 2:
        enc.append(layers.Reshape((h, w, 1)))
    enc += [layers.Conv2D(n, 4, strides=2, padding="same", activation="relu") for n in f]
    enc.append(layers.Flatten())
    top = (h // 2 ** d, w // 2 ** d, f[-1])
    dec = [layers.InputLayer(input_shape=(latent_dim,)),
           layers.Dense(top[0] * top[1] * top[2], activation="relu"), layers.Reshape(top)]
    dec += [layers.Conv2DTranspose(n, 4, strides=2, padding="same", activation="relu") for n in f[::-1][1:]]
    dec.append(layers.Conv2DTranspose(c, 4, strides=2, padding="same", activation="sigmoid"))
    if len(shape) == 2:
        dec.append(layers.Reshape((h, w)))
    return tf.keras.Sequential(enc), tf.keras.Sequential(dec)
