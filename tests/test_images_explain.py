"""Anchor explanations of an image classifier (DESIGN §8: ``explainer.type: anchor-image``), with real services.

A real model server (uvicorn on 127.0.0.1) serves a scikit-learn classifier of 32×32×3
patches (which of scikit-learn's two sample photos a patch comes from, `tests.imagedata`)
behind a ``shape: [32, 32, 3]`` schema; `vigil train` builds alibi's `AnchorImage` (slic
superpixels) against it; the explainer service explains one image per ``POST /explain`` by
calling the model server as a black box, within ``explainer.timeout`` — past it a 504 with
reason ``timeout``, never a hang — and the anchor is saved as a PNG.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import joblib
import numpy as np
import pytest

from tests import imagedata
from tests.conftest import serve_ready
from tests.servers import metric_value, serve_app, wait_until
from vigil.events import v2_request
from vigil.modelserver.app import create_app as create_model_app
from vigil.modelserver.settings import ModelServerSettings

SHAPE = [32, 32, 3]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    x, y = imagedata.patches(700, seed=1)
    model = LogisticRegression(max_iter=500, C=1.0).fit(x[:600].reshape(600, -1), y[:600])
    accuracy = model.score(x[600:].reshape(100, -1), y[600:])
    assert accuracy > 0.75, accuracy  # a classifier worth explaining
    path = tmp_path_factory.mktemp("img") / "model.joblib"
    joblib.dump(model, path)
    return {"x": x, "y": y, "model": model, "path": str(path)}


@pytest.fixture(scope="module")
def model_url(task):
    settings = ModelServerSettings(uri=task["path"], format="sklearn", name="patches", shape=SHAPE)
    with serve_app(create_model_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def artifact(task, model_url, tmp_path_factory):
    from vigil_detectors.train import train_array

    out = tmp_path_factory.mktemp("anchor") / "explainer"
    train_array("explainer", task["x"][:50], {"type": "anchor-image", "seed": 0}, out, model=model_url,
                model_name="patches", progress=lambda m: None)
    return str(out)


@contextmanager
def explainer(artifact: str, model_url: str, **settings):
    from vigil_detectors.explainer.service import create_app
    from vigil_detectors.explainer.settings import ExplainerSettings

    s = ExplainerSettings(artifact=artifact, model_url=model_url, model_name="patches", type="anchor-image",
                          shape=SHAPE, seed=0, **settings)
    with serve_ready(create_app(s), timeout=120, client_timeout=120) as client:
        yield client


def post(client, body: dict):
    return client.post("/explain", content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.slow
def test_anchor_image_explanation_in_bounded_time_and_saved_as_png(task, model_url, artifact, tmp_path):
    from PIL import Image

    from vigil_detectors.explainer.imageplot import save_anchor_png

    image = task["x"][650]
    with explainer(artifact, model_url, threshold=0.9, timeout_seconds=60) as client:
        started = time.monotonic()
        r = post(client, {"instances": [image.tolist()]})
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        exp = r.json()
        segments = np.asarray(exp["segments"])
        assert segments.shape == (32, 32) and segments.dtype.kind == "i"
        # this image's prediction needs some superpixels kept (another's may hold with none: an empty anchor)
        assert exp["anchor"] and set(exp["anchor"]) <= set(np.unique(segments).tolist())
        assert exp["precision"] >= 0.8, exp["precision"]
        assert 0 < exp["coverage"] <= 1
        assert exp["prediction"] == int(task["model"].predict(image.reshape(1, -1))[0])
        assert exp["modelCalls"] > 0 and took < 60 + 5
        # the same image as a V2 tensor [1, 32, 32, 3] is explained the same way
        r2 = post(client, v2_request(image[None]))
        assert r2.status_code == 200 and r2.json()["prediction"] == exp["prediction"], r2.text
        # a wrong shape is a 400 naming both shapes; the service keeps answering
        bad = post(client, {"instances": [np.zeros((16, 16, 3)).tolist()]})
        assert bad.status_code == 400 and "32, 32, 3" in bad.json()["error"], bad.text
        status = client.get("/status").json()["explainer"]
        assert status["explanations"] == 2 and status["precision"] >= 0.8

    png = save_anchor_png(image, segments, exp["anchor"], tmp_path / "anchor.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (256, 256)
        pixels = np.asarray(img.convert("RGB"), dtype=float) / 255
    small = pixels[4::8, 4::8]  # one sample per original pixel
    inside = np.isin(segments, exp["anchor"])
    # anchor pixels keep their colour (or carry the yellow outline); the rest is dimmed towards grey
    kept = np.isclose(small[inside], image[inside], atol=1 / 255 + 1e-6).all(axis=1)
    outline = np.isclose(small[inside], [1.0, 0.85, 0.0], atol=1 / 255 + 1e-6).all(axis=1)
    assert (kept | outline).all() and kept.any()
    assert np.allclose(small[~inside], 0.35 * image[~inside] + 0.65 * 0.5, atol=1 / 255 + 1e-6)


@pytest.mark.slow
def test_anchor_image_past_its_timeout_is_a_504_and_the_explainer_recovers(task, model_url, artifact):
    image = task["x"][651]
    with explainer(artifact, model_url, threshold=0.999, timeout_seconds=0.3, max_concurrent=1) as client:
        started = time.monotonic()
        r = post(client, {"instances": [image.tolist()]})
        took = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json()["reason"] == "timeout" and "timeout" in r.json()["error"]
        assert took < 0.3 + 2.0 + 3.0, took  # timeout + grace + slack of a loaded machine
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "vigil_explainer_failures_total", reason="timeout") == 1
        # the worker ends at its next model call and its explainer copy comes back; the next request is
        # served by it (and times out again: not a 503, not a hang)
        wait_until(lambda: client.get("/status").json()["explainer"]["busy"] == 0, timeout=15, what="copy back")
        r = post(client, {"instances": [image.tolist()]})
        assert r.status_code == 504, r.text
        assert metric_value(client.get("/metrics").text, "vigil_explainer_failures_total", reason="timeout") == 2
