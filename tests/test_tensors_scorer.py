"""The image scoring path of the outlier service against alibi-detect's own `OutlierVAE.predict`.

For tensor instances `VAEScorer` computes `OutlierVAE.score` in one compiled graph (each image
encoded once, `samples` draws through the VAE's own ``Sampling`` layer, squared error averaged
over the draws; see `vigil_detectors.outlier.scorer`). Here it is compared with the library's
`predict` — the detector's Keras VAE called as shipped — on the same prepared images of a conv
VAE trained by `train_outlier` on 32×32×3 patches:

- with the same latent noise: the library draws its noise with ``tf.keras.backend.random_normal``
  inside ``Sampling``; patched (before the scorer traces its graph) to a stateless normal of a
  fixed seed, both paths draw the same ``(n·samples, latent)`` values, so feature scores, instance
  scores and flags must agree to float32 rounding (rtol 1e-5). This also checks that the i-th
  draw goes with the i-th copy of an image, as in the library's ``np.repeat``;
- with zero noise (z = z_mean: any padding, any order of draws gives the same answer), on a
  batch the scorer pads (17 → 18 images), so the padding's rows must be dropped correctly;
- with the library's own random draws (no patch): scores of the two are two Monte Carlo
  estimates of the same expectation; per image they agree within the spread of the library
  against itself, and the flags of the images far from the threshold agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from vigil import imagedata

pytestmark = pytest.mark.tensorflow

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from vigil_detectors.outlier.train import train_outlier

    x, _ = imagedata.patches(300, seed=0)
    out = tmp_path_factory.mktemp("vae") / "outlier"
    train_outlier(x, {"epochs": 2, "latentDim": 8, "thresholdPercentile": 90}, out, progress=lambda _: None)
    return out


@pytest.fixture(scope="module")
def images():
    x, _ = imagedata.patches(64, seed=7)
    x[::4] = np.clip(x[::4] + np.random.default_rng(2).normal(0, 0.8, x[::4].shape), 0, 1)  # some outliers
    return x


def load(artifact):
    from vigil_detectors.outlier.scorer import VAEScorer

    return VAEScorer.load(str(artifact))


def library_predict(scorer, x: np.ndarray) -> dict:
    """alibi-detect's `OutlierVAE.predict` with the detector's Keras VAE itself (not the service's path)."""
    compiled, scorer.od.vae = scorer.od.vae, scorer.model
    try:
        return scorer.od.predict(x, return_feature_score=True, return_instance_score=True)["data"]
    finally:
        scorer.od.vae = compiled


@pytest.fixture
def fixed_noise(monkeypatch):
    """The latent noise of ``Sampling`` made a function of its shape only (seeded stateless normal)."""
    import tensorflow as tf

    def noise(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return tf.random.stateless_normal(shape, seed=[7, 11])

    monkeypatch.setattr(tf.keras.backend, "random_normal", noise)


@pytest.fixture
def zero_noise(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.keras.backend, "random_normal", lambda shape, **kw: tf.zeros(shape))


def test_padded_images_rule():
    from vigil_detectors.outlier.scorer import padded_images

    assert [padded_images(n) for n in (1, 3, 8, 9, 16, 17, 19, 33, 63, 64, 65)] == \
        [1, 3, 8, 9, 16, 18, 20, 36, 64, 64, 72]
    for n in range(1, 600):
        p = padded_images(n)
        assert n <= p and (p - n) * 8 < n + 8  # less than an eighth wasted
    assert len({padded_images(n) for n in range(1, 65)}) <= 33  # bounded distinct shapes


def test_same_noise_gives_the_library_scores(artifact, images, fixed_noise):
    scorer = load(artifact)  # traced under the patch
    x = scorer.prepare(images[:16])  # 16 is not padded: both paths draw (160, latent)
    want = library_predict(scorer, x)
    iscore, fscore, flags = scorer.score(x)
    assert fscore.shape == (16, *SHAPE) and fscore.dtype == np.float32
    np.testing.assert_allclose(fscore, want["feature_score"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(iscore, want["instance_score"], rtol=1e-5)
    assert flags.tolist() == want["is_outlier"].tolist()
    assert 0 < flags.sum() < 16  # the comparison covers both answers
    # the noise does matter: the same images scored with another draw differ (so equality above is not trivial)
    other = scorer.score(scorer.prepare(images[16:32]))[0]
    assert not np.allclose(other, iscore, rtol=1e-3)


def test_padding_is_dropped(artifact, images, zero_noise):
    from vigil_detectors.outlier.scorer import padded_images

    scorer = load(artifact)
    x = scorer.prepare(images[:17])
    assert padded_images(17) > 17
    want = library_predict(scorer, x)
    iscore, fscore, flags = scorer.score(x)
    assert len(iscore) == len(fscore) == len(flags) == 17
    np.testing.assert_allclose(fscore, want["feature_score"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(iscore, want["instance_score"], rtol=1e-5)
    assert flags.tolist() == want["is_outlier"].tolist()
    # one image alone scores as it does within the batch (rows are independent)
    np.testing.assert_allclose(scorer.score(x[5:6])[0], iscore[5:6], rtol=1e-5)


def test_library_draws_agree_in_distribution(artifact, images):
    scorer = load(artifact)
    x = scorer.prepare(images)
    ours = scorer.score(x)
    lib_a, lib_b = library_predict(scorer, x), library_predict(scorer, x)
    # the library against itself: how far two Monte Carlo estimates of the same score fall apart
    spread = np.abs(lib_a["instance_score"] - lib_b["instance_score"])
    diff = np.abs(ours[0] - lib_a["instance_score"])
    assert np.median(diff) < 3 * np.median(spread) + 1e-6
    np.testing.assert_allclose(np.mean(ours[0]), np.mean(lib_a["instance_score"]), rtol=0.05)
    np.testing.assert_allclose(ours[1].mean(axis=0), lib_a["feature_score"].mean(axis=0), rtol=0.2, atol=1e-3)
    t = scorer.threshold
    far = np.abs(lib_a["instance_score"] - t) > 0.2 * t
    assert far.sum() > 32
    assert (ours[2][far] == lib_a["is_outlier"][far]).all()


def test_a_conv_vae_is_scored_by_tensorflow(artifact):
    """Only dense VAEs get NumPy arrays (`outlier.dense`); an image artifact has none and loads TensorFlow."""
    from vigil_detectors.outlier.dense import WEIGHTS

    assert not (artifact / WEIGHTS).exists()
    assert load(artifact).engine == "tensorflow"


# -- the decoder's last layer as a forward convolution (vigil_detectors.outlier.deconv) ----------------------------

@pytest.mark.parametrize("kernel, stride, padding, size, channels, filters, activation", [
    (4, 2, "same", 16, 16, 3, "sigmoid"),  # the last layer `vigil train` builds for 32x32x3
    (4, 2, "same", 4, 64, 32, "relu"), (3, 2, "same", 5, 4, 2, None), (3, 2, "valid", 5, 4, 2, None),
    (5, 3, "same", 7, 3, 4, "tanh"), (3, 1, "same", 6, 2, 3, None), (4, 2, "valid", 4, 3, 1, None),
    (2, 2, "same", 4, 3, 2, None), (1, 1, "valid", 4, 3, 2, None), (5, 2, "same", 6, 3, 2, "relu"),
    (3, 3, "valid", 4, 2, 2, None), ((3, 5), 2, "same", 6, 3, 2, None),
])
def test_subpixel_conv_equals_the_keras_layer(kernel, stride, padding, size, channels, filters, activation):
    import tf_keras

    from vigil_detectors.outlier.deconv import SubpixelConv2DTranspose

    layer = tf_keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding=padding, activation=activation,
                                            bias_initializer="random_normal")
    x = np.random.default_rng(3).normal(size=(5, size, size + 1, channels)).astype(np.float32)
    want = layer(x).numpy()
    got = SubpixelConv2DTranspose(layer)(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_subpixel_conv_with_unknown_spatial_dims_equals_the_keras_layer():
    import tensorflow as tf
    import tf_keras

    from vigil_detectors.outlier.deconv import SubpixelConv2DTranspose

    layer = tf_keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", bias_initializer="random_normal")
    layer.build((None, None, None, 8))
    traced = tf.function(SubpixelConv2DTranspose(layer), input_signature=[tf.TensorSpec([None, None, None, 8])])
    for h, w in ((5, 7), (9, 4)):  # one graph, two image sizes
        x = np.random.default_rng(h).normal(size=(2, h, w, 8)).astype(np.float32)
        np.testing.assert_allclose(traced(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-6)


def test_only_few_channel_transposed_convs_it_covers_are_rewritten(artifact):
    import tf_keras

    from vigil_detectors.outlier.deconv import SubpixelConv2DTranspose, decoder_call, rewrite

    dilated = tf_keras.layers.Conv2DTranspose(3, 3, dilation_rate=2)
    padded = tf_keras.layers.Conv2DTranspose(3, 3, strides=2, output_padding=1)
    for layer in (dilated, padded):
        layer.build((None, 8, 8, 4))
        assert SubpixelConv2DTranspose.unsupported(layer) is not None
        assert rewrite(layer) is None
    wide = tf_keras.layers.Conv2DTranspose(16, 3, strides=2)
    wide.build((None, 8, 8, 4))
    assert rewrite(wide) is None  # 16 channels: as fast as its rewrite, left to Keras
    decoder = load(artifact).model.decoder
    rewritten = decoder_call(decoder)
    assert rewritten is not decoder  # its last layer (to 3 channels) is rewritten, the 16+ channel ones not
    z = np.random.default_rng(4).normal(size=(7, 8)).astype(np.float32)
    np.testing.assert_allclose(rewritten(z).numpy(), decoder(z).numpy(), rtol=1e-5, atol=1e-6)
