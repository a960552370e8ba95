"""An image monitor end to end on loopback (DESIGN §8, issue 11): a CIFAR-shaped task (32×32×3 patches of
scikit-learn's sample photos), a Keras CNN behind the model server, the request logger, a convolutional
`OutlierVAE` trained by `vigil train` from a ``.npy`` reference, and the metrics service — all real
processes started by `vigil up`'s backend.

Predictions come back through the logger for V1 and V2 bodies and agree; a wrong image shape is a 400
naming both shapes at the model server (through the logger) and at the outlier detector; the VAE flags
strongly corrupted images at a high rate and clean ones at about its threshold percentile, with per-pixel
scores; metrics from feedback match the predictions the client saw.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cloud_event
from tests.prom import free_port_range
from vigil import imagedata
from vigil.local import LocalStack, local_plan
from vigil.spec import load_monitor

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]

PERCENTILE = 95
MONITOR = f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata: {{name: cifar, namespace: test}}
spec:
  model: {{storageUri: model.h5, format: tensorflow, name: cifar}}
  schema: {{shape: [32, 32, 3]}}
  reference: {{storageUri: reference.npy}}
  detectors:
    outlier: {{latentDim: 16, epochs: 3, thresholdPercentile: {PERCENTILE}, maxBatchSize: 64}}
    metrics: {{task: classification, classes: [china, flower], window: 1000}}
"""


def v2(batch: np.ndarray) -> dict:
    return {"inputs": [{"name": "input-0", "shape": list(batch.shape), "datatype": "FP32",
                        "data": np.round(batch, 4).ravel().tolist()}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    x, y = imagedata.patches(500, seed=0)
    np.save(tmp / "reference.npy", x)
    imagedata.train_classifier(x[:300], y[:300], tmp / "model.h5", epochs=3)
    (tmp / "monitor.yaml").write_text(MONITOR)
    monitor = load_monitor(tmp / "monitor.yaml")
    LocalStack(*local_plan(monitor, tmp, tmp / "work", free_port_range(8)), say=lambda _: None).train()
    # ports picked after the minutes of training, so nothing started meanwhile has taken them
    s = LocalStack(*local_plan(monitor, tmp, tmp / "work", free_port_range(8)), say=lambda _: None)
    s.start(timeout=240)
    try:
        yield s, s.component_urls(), tmp
    finally:
        s.stop()


def test_predictions_through_the_logger_v1_and_v2(stack):
    import httpx

    _, urls, _ = stack
    x, y = imagedata.patches(48, seed=11)
    with httpx.Client(timeout=60) as client:
        r2 = client.post(f"{urls['logger']}/v2/models/cifar/infer", json=v2(x))
        assert r2.status_code == 200, r2.text
        outputs = {o["name"]: o for o in r2.json()["outputs"]}
        labels = np.array(outputs["predict"]["data"])
        assert outputs["predict"]["shape"] == [48] and outputs["predict_proba"]["shape"] == [48, 2]
        r1 = client.post(f"{urls['logger']}/v1/models/cifar:predict", json={"instances": np.round(x, 4).tolist()})
        assert r1.status_code == 200, r1.text
        assert r1.json()["predictions"] == labels.tolist()
        assert (labels == y).mean() > 0.8  # the CNN learned the task (clean data)
        meta = client.get(f"{urls['model']}/v2/models/cifar").json()
        assert meta["inputs"][0]["shape"] == [-1, 32, 32, 3]
        bad = client.post(f"{urls['logger']}/v2/models/cifar/infer", json=v2(x[:2, :16, :16]))
        assert bad.status_code == 400
        assert "[32, 32, 3]" in bad.json()["error"] and "[16, 16, 3]" in bad.json()["error"]


def _score(client, url, batch):
    msg = cloud_event({"instances": np.round(batch, 4).tolist()})
    r = client.post(url + "/", headers=msg.headers, content=msg.body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_outlier_flags_strong_noise_and_clean_at_its_percentile(stack):
    import httpx

    _, urls, _ = stack
    clean, _ = imagedata.patches(400, seed=21)
    noisy = np.clip(clean[:100] + np.random.default_rng(3).normal(0, 1.0, clean[:100].shape), 0, 1)
    with httpx.Client(timeout=120) as client:
        flags = []
        for i in range(0, len(clean), 50):
            data = _score(client, urls["outlier"], clean[i:i + 50])
            flags += data["is_outlier"]
        assert np.array(data["feature_score"]).shape == (50, 32, 32, 3)  # per-pixel scores by default
        clean_rate = float(np.mean(flags))
        assert clean_rate < 3 * (100 - PERCENTILE) / 100, clean_rate  # about its threshold percentile
        noisy_flags = []
        for i in range(0, len(noisy), 50):
            noisy_flags += _score(client, urls["outlier"], noisy[i:i + 50])["is_outlier"]
        assert np.mean(noisy_flags) > 0.9
        msg = cloud_event({"instances": np.zeros((1, 28, 28, 3)).tolist()})
        r = client.post(urls["outlier"] + "/", headers=msg.headers, content=msg.body)
        assert r.status_code == 400 and "[32, 32, 3]" in r.json()["error"] and "[28, 28, 3]" in r.json()["error"]
        status = client.get(urls["outlier"] + "/status").json()["outliers"]
        assert status["seen"] >= 500


def test_metrics_from_feedback_match_the_predictions(stack):
    import time

    import httpx

    _, urls, _ = stack
    x, y = imagedata.patches(120, seed=31)
    predicted = []
    with httpx.Client(timeout=60) as client:
        before = client.get(urls["metrics"] + "/status").json()["metrics"]["instances"]
        for i in range(0, len(x), 20):
            r = client.post(f"{urls['logger']}/v2/models/cifar/infer", json=v2(x[i:i + 20]))
            assert r.status_code == 200, r.text
            predicted += r.json()["outputs"][0]["data"]
            fb = client.post(f"{urls['logger']}/feedback", json={"inferenceId": r.headers["x-inference-id"],
                                                                 "truth": y[i:i + 20].tolist()})
            assert fb.status_code in (200, 202), fb.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = client.get(urls["metrics"] + "/status").json()["metrics"]
            if m["instances"] - before >= len(x):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"metrics never saw the feedback: {m}")
    expected = float(np.mean(np.array(predicted) == y))
    assert m["accuracy"] == pytest.approx(expected, abs=1e-9), (m, expected)


def test_savedmodel_keras_and_h5_files_serve_the_same_predictions(stack):
    import tf_keras

    from vigil.modelserver.loaders import load_model

    _, _, tmp = stack
    model = tf_keras.models.load_model(str(tmp / "model.h5"))
    model.save(str(tmp / "model.keras"))
    model.save(str(tmp / "saved"), save_format="tf")
    x, _ = imagedata.patches(300, seed=41)  # more than one chunk of TF_CHUNK images
    answers = {}
    for path in ("model.h5", "model.keras", "saved"):
        m = load_model(str(tmp / path), "tensorflow")
        assert m.input_shape == (32, 32, 3) and m.classifier and m.n_classes == 2, path
        answers[path] = m.predict(x.astype(np.float64))
    for path in ("model.keras", "saved"):
        assert np.array_equal(answers[path][0], answers["model.h5"][0]), path
        assert np.allclose(answers[path][1], answers["model.h5"][1], atol=1e-5), path


def test_noise_sent_through_the_logger_is_counted_as_outliers(stack):
    import time

    import httpx

    _, urls, _ = stack
    x, _ = imagedata.patches(60, seed=51)
    noisy = np.clip(x + np.random.default_rng(8).normal(0, 1.0, x.shape), 0, 1)
    with httpx.Client(timeout=60) as client:
        before = client.get(urls["outlier"] + "/status").json()["outliers"]
        for i in range(0, len(noisy), 20):
            assert client.post(f"{urls['logger']}/v2/models/cifar/infer", json=v2(noisy[i:i + 20])).status_code == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = client.get(urls["outlier"] + "/status").json()["outliers"]
            if now["seen"] - before["seen"] >= len(noisy):
                break
            time.sleep(0.2)
    assert now["seen"] - before["seen"] == len(noisy), (before, now)  # each image scored once
    assert (now["outliers"] - before["outliers"]) / len(noisy) > 0.9, (before, now)
