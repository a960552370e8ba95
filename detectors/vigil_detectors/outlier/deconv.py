"""A conv VAE's last transposed convolution as a forward one (the image scorer's decoder, faster).

The decoder of a convolutional `OutlierVAE` ends in a ``Conv2DTranspose`` to the image's few
channels (``C`` = 1–4). On this stack (TF 2.18, oneDNN, one core) that layer is the costliest of
the whole VAE (about 40% of scoring a batch of images, though it does the least arithmetic), while
transposed convolutions to 16+ channels are as fast as their rewrite; rewritten, the decoder of
`vigil train`'s 32×32×3 VAE takes 58 instead of 76 ms of CPU for 600 draws (median of 30
interleaved calls; rewriting every layer: 63 ms). So
`decoder_call` runs a ``Sequential`` decoder layer by layer, each ``Conv2DTranspose`` whose
``filters`` ≤ `FEW_CHANNELS` replaced by `SubpixelConv2DTranspose`, the same map computed the
"sub-pixel" way:

a transposed convolution of stride ``s`` writes ``y[s·i + a - p] += x[i] · W[a]`` (tap ``a``,
crop ``p``). Split every tap as ``a = s·q + r``: the outputs of phase ``r`` (``y[s·m + r]``)
take ``Σ_q x[m - q] · W[s·q + r]``, a plain correlation of ``x`` (padded by ``Q - 1``, ``Q =
⌈k/s⌉``) with the ``q``-flipped taps of phase ``r``. All ``s²`` phases are one ``conv2d`` with
``s²·filters`` output channels; ``depth_to_space(s)`` interleaves them, and the crop of TF's
``same``/``valid`` padding (``p = max(k - s, 0) // 2`` before) gives the layer's output. Bias
and activation are the layer's own.

Only layers this covers exactly are replaced (channels-last, equal strides, dilation 1, no
``output_padding``); every other layer, and a decoder that is not a ``Sequential``, runs as it
is. tests/test_tensors_scorer.py compares `SubpixelConv2DTranspose` with Keras's layer over
kernels, strides, paddings and sizes, and the scorer with ``OutlierVAE.predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np

#: Transposed convolutions to at most this many channels (an image's) are rewritten (module docstring).
FEW_CHANNELS = 4


class SubpixelConv2DTranspose:
    """``layer(x)`` of a Keras ``Conv2DTranspose`` as one forward ``conv2d`` + ``depth_to_space``."""

    def __init__(self, layer: Any):
        import tensorflow as tf

        if (why := self.unsupported(layer)) is not None:
            raise ValueError(why)
        kernel = np.asarray(layer.kernel.numpy())  # (kh, kw, filters, in)
        kh, kw, co, ci = kernel.shape
        s = int(layer.strides[0])
        q = -(-max(kh, kw) // s)
        k = np.pad(kernel, [[0, q * s - kh], [0, q * s - kw], [0, 0], [0, 0]]).reshape(q, s, q, s, co, ci)
        k = k[::-1, :, ::-1]  # tap q of x[m - q] is the correlation's tap Q-1-q
        self.kernel = tf.constant(np.ascontiguousarray(k.transpose(0, 2, 5, 1, 3, 4).reshape(q, q, ci, s * s * co)))
        self.stride, self.q, self.size = s, q, (kh, kw)
        self.same = layer.padding == "same"
        self.bias = layer.bias if layer.use_bias else None
        self.activation = layer.activation

    @staticmethod
    def unsupported(layer: Any) -> Optional[str]:
        """Why `layer` is not rewritten (it then runs as Keras's own), or None."""
        if layer.data_format != "channels_last":
            return "channels_first"
        if layer.strides[0] != layer.strides[1]:
            return "unequal strides"
        if tuple(layer.dilation_rate) != (1, 1):
            return "dilation"
        if getattr(layer, "output_padding", None) is not None:
            return "output_padding"
        return None

    def __call__(self, x, training=None):  # noqa: ARG002 - called as a Keras layer is; no training behaviour
        import tensorflow as tf

        s, q, (kh, kw) = self.stride, self.q, self.size
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:  # a graph traced with unknown spatial dims: the crop's sizes at run time
            dynamic = tf.shape(x)
            h = dynamic[1] if h is None else h
            w = dynamic[2] if w is None else w
        if q > 1:
            x = tf.pad(x, [[0, 0], [q - 1, q - 1], [q - 1, q - 1], [0, 0]])
        y = tf.nn.conv2d(x, self.kernel, 1, "VALID")
        if s > 1:
            y = tf.nn.depth_to_space(y, s)
        if self.same:
            top, left, oh, ow = max(kh - s, 0) // 2, max(kw - s, 0) // 2, h * s, w * s
        else:
            top, left, oh, ow = 0, 0, (h - 1) * s + kh, (w - 1) * s + kw
        y = y[:, top:top + oh, left:left + ow, :]
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)


def rewrite(layer: Any) -> Optional[SubpixelConv2DTranspose]:
    """`layer` as a `SubpixelConv2DTranspose` when it is a few-channel ``Conv2DTranspose`` the rewrite
    covers; None: it runs as Keras's own."""
    import tf_keras

    if not isinstance(layer, tf_keras.layers.Conv2DTranspose) or layer.filters > FEW_CHANNELS:
        return None
    return None if SubpixelConv2DTranspose.unsupported(layer) is not None else SubpixelConv2DTranspose(layer)


def decoder_call(decoder: Any) -> Callable:
    """`decoder` (alibi-detect's ``Decoder``: ``decoder_net`` a Keras ``Sequential``) as a callable with
    its few-channel ``Conv2DTranspose`` layers rewritten; `decoder` itself when there is none."""
    import tf_keras

    net = getattr(decoder, "decoder_net", None)
    if not isinstance(net, tf_keras.Sequential):
        return decoder
    rewritten = [rewrite(layer) for layer in net.layers]
    if not any(rewritten):
        return decoder
    calls = [new or layer for new, layer in zip(rewritten, net.layers, strict=True)]

    def run(z):
        for call in calls:
            z = call(z, training=False)
        return z

    return run
