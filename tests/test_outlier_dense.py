"""The NumPy scorer of dense VAEs (`vigil_detectors.outlier.dense`) against alibi-detect's own `predict`.

On a VAE trained by `train_outlier` on the wine data (scikit-learn), prepared rows are scored by
`DenseScorer` and by the library's `OutlierVAE.predict` (the detector loaded by `load_detector`,
its Keras VAE called as shipped):

- with the same latent noise — the library draws it with ``tf.keras.backend.random_normal`` in
  ``Sampling``, patched here to a fixed array of the requested shape that `DenseScorer.noise` also
  returns — feature scores, instance scores and flags agree to float32 rounding, for batch sizes
  1..178; another noise gives other scores (so the agreement is not trivial);
- with the library's own draws: two Monte Carlo estimates of one expectation, ours as far from the
  library's as the library's from itself;
- the arrays stand for the artifact only while it is unchanged: re-saved by alibi-detect, edited or
  without the file, `load` refuses (`Unavailable`) and the service scores with TensorFlow.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.datasets import load_wine

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True)[0]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, wine):
    from vigil_detectors.outlier.train import train_outlier

    out = tmp_path_factory.mktemp("dense") / "outlier"
    train_outlier(wine, {"epochs": 10, "latentDim": 3, "thresholdPercentile": 90}, out, progress=lambda _: None)
    return out


@pytest.fixture(scope="module")
def library(artifact):
    from alibi_detect.saving import load_detector

    return load_detector(str(artifact))


def fixed(shape) -> np.ndarray:
    """A standard normal array that depends only on its shape."""
    shape = tuple(int(s) for s in shape)
    return np.random.default_rng(list(shape)).standard_normal(shape, dtype=np.float32)


@pytest.fixture
def same_noise(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.keras.backend, "random_normal", lambda shape, **kw: tf.constant(fixed(shape)))


def predict(od, x):
    data = od.predict(x, return_feature_score=True, return_instance_score=True)["data"]
    return data["instance_score"], data["feature_score"], data["is_outlier"]


def test_same_noise_gives_the_library_scores(artifact, library, wine, same_noise):
    from vigil_detectors.outlier.dense import DenseScorer

    scorer = DenseScorer.load(str(artifact))
    scorer.noise = fixed
    assert scorer.threshold == library.threshold and scorer.samples == library.samples
    assert scorer.meta == library.meta
    rows = wine.copy()
    rows[::9] *= 1.8  # some outliers among them, so the flags are not all equal
    x = scorer.prepare(rows)
    for n in (1, 2, 7, 64, 178):
        ours, theirs = scorer.score(x[:n]), predict(library, x[:n])
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, err_msg=f"instance scores, {n} rows")
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-7, err_msg=f"feature scores, {n} rows")
        assert ours[1].shape == (n, 13)
        np.testing.assert_array_equal(ours[2], theirs[2])
    assert 0 < int(ours[2].sum()) < len(x)
    scorer.noise = lambda shape: fixed(shape)[::-1].copy()  # other draws: other scores
    assert not np.allclose(scorer.score(x)[0], theirs[0], rtol=1e-3)


def test_library_draws_agree_in_distribution(artifact, library, wine):
    from vigil_detectors.outlier.dense import DenseScorer

    scorer = DenseScorer.load(str(artifact))
    x = scorer.prepare(wine)
    first, second, ours = predict(library, x)[0], predict(library, x)[0], scorer.score(x)[0]
    spread = np.median(np.abs(second - first) / first)
    assert 0 < spread < 0.2
    assert np.median(np.abs(ours - first) / first) < 2 * spread
    far = np.abs(first / library.threshold - 1) > 0.5  # flags of rows far from the threshold agree
    np.testing.assert_array_equal((ours > scorer.threshold)[far], (first > library.threshold)[far])


def test_weights_stand_for_the_artifact_only_while_it_is_unchanged(artifact, library, tmp_path):
    from alibi_detect.saving import save_detector

    from vigil_detectors.outlier.dense import WEIGHTS, DenseScorer, Unavailable

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    assert DenseScorer.load(str(copy)).engine == "numpy"
    (copy / "meta.dill").write_bytes((copy / "meta.dill").read_bytes() + b"\0")
    with pytest.raises(Unavailable, match="other contents"):
        DenseScorer.load(str(copy))
    resaved = tmp_path / "resaved"
    save_detector(library, str(resaved))  # alibi-detect's save: no arrays of ours
    with pytest.raises(Unavailable, match=f"no {WEIGHTS}"):
        DenseScorer.load(str(resaved))
    shutil.copy(artifact / WEIGHTS, resaved / WEIGHTS)  # arrays of another save: refused
    with pytest.raises(Unavailable, match="other contents"):
        DenseScorer.load(str(resaved))


def test_the_service_scores_with_tensorflow_when_the_arrays_do_not_fit(artifact, tmp_path, caplog):
    from vigil.telemetry import ServiceMetrics
    from vigil_detectors.outlier.dense import WEIGHTS
    from vigil_detectors.outlier.detector import OutlierDetector
    from vigil_detectors.outlier.settings import OutlierSettings

    def engine(path) -> str:
        detector = OutlierDetector(OutlierSettings(artifact=str(path)), ServiceMetrics())
        detector.load()
        return detector.scorer.engine

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    with caplog.at_level("INFO", logger="vigil.outlier"):
        assert engine(copy) == "numpy"
        (copy / WEIGHTS).unlink()
        assert engine(copy) == "tensorflow"
    assert f"scoring with TensorFlow: no {WEIGHTS}" in caplog.text
