"""Drift on images (DESIGN §8): ``preprocess: {type: uae}`` on a CIFAR-shaped task, with real services.

`vigil train` builds alibi-detect's untrained `UAE` with seeded weights and saves it with the
encoded reference; the drift service loads it, encodes each request's images at ingest and
tests every encoded dimension with KS, corrected over the dimensions. Patches of
scikit-learn's sample photos (`tests.imagedata`) are the data: clean windows are not flagged
and each of the four corruptions of alibi-detect's CIFAR-10 example is; the verdicts equal
alibi-detect's own `KSDrift` (with the same preprocess_fn) and survive a restart unchanged.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest

from tests import imagedata
from tests.conftest import cloud_event, serve_ready
from vigil import spec as vspec
from vigil.events import v2_request
from vigil.plan import build_plan

WINDOW = 500
REFERENCE = 1000
UAE = {"type": "uae", "encodingDim": 32, "seed": 0}
#: 32 KS tests per window: a 1% significance keeps false alarms rare; every corruption stays far below it.
P_VALUE = 0.01


@pytest.fixture(scope="module")
def images():
    x, _ = imagedata.patches(REFERENCE + 3 * WINDOW, seed=0)
    return {"reference": x[:REFERENCE], "clean": [x[REFERENCE + i * WINDOW:REFERENCE + (i + 1) * WINDOW]
                                                  for i in range(3)]}


@pytest.fixture(scope="module")
def artifact(images, tmp_path_factory):
    from vigil_detectors.train import train_array

    out = tmp_path_factory.mktemp("uae") / "drift"
    train_array("drift", images["reference"], {"preprocess": UAE, "pValue": P_VALUE, "correction": "bonferroni"}, out,
                progress=lambda m: None)
    return str(out)


@contextmanager
def drift(artifact: str, state_dir: str, shape=(32, 32, 3)):
    from vigil_detectors.drift.service import create_app
    from vigil_detectors.drift.settings import DriftSettings

    s = DriftSettings(monitor="img", artifact=artifact, preprocess="uae", window_size=WINDOW, max_age_seconds=0,
                      p_value=P_VALUE, shape=list(shape) if shape else None,
                      state_dir=state_dir)
    with serve_ready(create_app(s), timeout=120, client_timeout=60) as client:
        yield client


def window(client, x: np.ndarray, batch: int = 50, v2: bool = False) -> dict:
    """Send one window of images as request events (V1 nested lists or V2 [n, 32, 32, 3] tensors);
    the reply of the last one carries the check."""
    last = None
    for i in range(0, len(x), batch):
        part = x[i:i + batch]
        body = v2_request(part) if v2 else {"instances": part.tolist()}
        msg = cloud_event(body)
        r = client.post("/", headers=dict(msg.headers), content=msg.body)
        assert r.status_code in (200, 202), r.text
        last = r
    assert last is not None and last.status_code == 200, "the window's last event completes a check"
    return last.json()["drift"]


@pytest.mark.slow
def test_uae_drift_flags_each_corruption_not_clean_windows_and_restarts_the_same(images, artifact, tmp_path):
    from alibi_detect.saving import load_detector

    reference = load_detector(f"{artifact}/uae")  # alibi-detect's KSDrift with the same UAE preprocess_fn
    windows = {f"clean{i}": w for i, w in enumerate(images["clean"][:2])}
    windows.update({name: corrupt(images["clean"][2]) for name, corrupt in imagedata.CORRUPTIONS.items()})
    verdicts = {}
    with drift(artifact, str(tmp_path / "state")) as client:
        for k, (name, x) in enumerate(windows.items()):
            block = window(client, x, v2=k % 2 == 1)
            verdicts[name] = block
            want = reference.predict(x, return_p_val=True)["data"]
            got = np.array([block["features"][f"uae_{i}"]["pValue"] for i in range(UAE["encodingDim"])])
            np.testing.assert_allclose(got, want["p_val"], rtol=0, atol=1e-6)
            assert block["detected"] == bool(want["is_drift"]), name
        status = client.get("/status").json()["drift"]
        assert status["preprocess"] == {"type": "uae", "encodingDim": 32, "seed": 0, "shape": [32, 32, 3]}
        assert status["windows"] == len(windows)
    for name in ("clean0", "clean1"):
        assert not verdicts[name]["detected"], (name, verdicts[name]["pValue"])
    for name in imagedata.CORRUPTIONS:
        assert verdicts[name]["detected"], (name, verdicts[name]["pValue"])

    # a restart loads the saved weights: the same windows get the very same verdicts
    with drift(artifact, str(tmp_path / "state2")) as client:
        for name in ("clean0", "gaussian_noise"):
            again = window(client, windows[name])
            assert again["pValue"] == verdicts[name]["pValue"], name
            assert again["featuresDrifted"] == verdicts[name]["featuresDrifted"]


@pytest.mark.parametrize("shape", [(32, 32, 3), None], ids=["schema-shape", "artifact-shape"])
def test_wrong_image_shape_is_a_400_and_the_window_untouched(images, artifact, tmp_path, shape):
    """The frame refuses other shapes for a shape schema; without one the encoder's own shape is checked
    (flat rows of 3072 numbers are the same images)."""
    with drift(artifact, str(tmp_path / "state"), shape=shape) as client:
        for bad in [np.zeros((2, 100))] + ([np.zeros((2, 16, 16, 3))] if shape else []):
            msg = cloud_event({"instances": bad.tolist()})
            r = client.post("/", headers=dict(msg.headers), content=msg.body)
            assert r.status_code == 400 and "32, 32, 3" in r.json()["error"], r.text
        assert client.get("/status").json()["drift"]["fill"] == 0
        if shape is None:
            flat = images["clean"][0][:3].reshape(3, -1)
            msg = cloud_event({"instances": flat.tolist()})
            assert client.post("/", headers=dict(msg.headers), content=msg.body).status_code == 202
            assert client.get("/status").json()["drift"]["fill"] == 3


MONITOR = {
    "apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "img"},
    "spec": {"model": {"storageUri": "file:///m/model.joblib"}, "schema": {"featureNames": ["a", "b"]},
             "reference": {"storageUri": "file:///m/ref.npy"},
             "detectors": {"drift": {"preprocess": {"type": "uae"}}}},
}


class _Place:
    def port(self, c):
        return 9000

    def url(self, c):
        return f"http://127.0.0.1:9000/{c}"

    def path(self, uri):
        return uri.removeprefix("file://")

    def artifact_uri(self, c):
        return f"file:///art/{c}"

    def state_dir(self, c):
        return f"/state/{c}"


def test_spec_preprocess_trains_drift_and_needs_tensorflow_only_then():
    monitor = vspec.monitor_from_dict(MONITOR)
    assert monitor.spec.detectors.drift.preprocess.model_dump(by_alias=True) == {"type": "uae", "encodingDim": 32,
                                                                                  "seed": 0}
    plan = build_plan(monitor, _Place())
    d = plan.get("drift")
    assert d.train is not None and d.train.options["preprocess"] == {"type": "uae", "encodingDim": 32, "seed": 0}
    assert d.env["VIGIL_DRIFT_PREPROCESS"] == "uae" and d.env["VIGIL_DRIFT_ARTIFACT"] == "/art/drift"
    assert "VIGIL_DRIFT_REFERENCE" not in d.env
    assert d.needs_tensorflow
    tabular = vspec.monitor_from_dict({**MONITOR, "spec": {**MONITOR["spec"], "detectors": {"drift": {}}}})
    d = build_plan(tabular, _Place()).get("drift")
    assert d.train is None and not d.needs_tensorflow
    with pytest.raises(vspec.SpecError, match="preprocess.encodingDim"):
        vspec.monitor_from_dict({**MONITOR, "spec": {**MONITOR["spec"], "detectors": {
            "drift": {"preprocess": {"type": "uae", "encodingDim": 0}}}}})
    with pytest.raises(vspec.SpecError, match="preprocess.type"):
        vspec.monitor_from_dict({**MONITOR, "spec": {**MONITOR["spec"], "detectors": {
            "drift": {"preprocess": {"type": "pca"}}}}})


# -- preprocess: {type: model-output} --------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A real model server with a scikit-learn classifier of the patches (which photo), behind shape [32, 32, 3]."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from tests.servers import serve_app
    from vigil.modelserver.app import create_app as create_model_app
    from vigil.modelserver.settings import ModelServerSettings

    x, y = imagedata.patches(1400, seed=2)
    model = LogisticRegression(max_iter=500, C=1.0).fit(x[:600].reshape(600, -1), y[:600])
    path = tmp_path_factory.mktemp("clf") / "model.joblib"
    joblib.dump(model, path)
    settings = ModelServerSettings(uri=str(path), format="sklearn", name="patches", shape=[32, 32, 3])
    with serve_app(create_model_app(settings)) as url:
        yield {"url": url, "x": x}


def responses(url: str, x: np.ndarray, batch: int = 50) -> list[dict]:
    """The model server's own V2 responses (labels and class probabilities) for `x`."""
    import httpx

    out = []
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(x), batch):
            r = c.post(f"{url}/v2/models/patches/infer", json=v2_request(x[i:i + batch]))
            assert r.status_code == 200, r.text
            out.append(r.json())
    return out


def test_model_output_drift_tests_the_models_probabilities_from_response_events(classifier, tmp_path):
    from tests.conftest import serve_ready
    from vigil.events import RESPONSE
    from vigil_detectors.drift.service import create_app
    from vigil_detectors.drift.settings import DriftSettings
    from vigil_detectors.train import train_array

    x = classifier["x"]
    out = train_array("drift", x[600:1000], {"preprocess": {"type": "model-output"}, "pValue": 0.01}, tmp_path / "d",
                      model=classifier["url"], model_name="patches", progress=lambda m: None)
    s = DriftSettings(monitor="img", artifact=str(out), preprocess="model-output", window_size=200,
                      max_age_seconds=0, p_value=0.01, shape=[32, 32, 3])

    def window(client, bodies) -> dict:
        last = None
        for body in bodies:
            msg = cloud_event(body, RESPONSE)
            last = client.post("/", headers=dict(msg.headers), content=msg.body)
            assert last.status_code in (200, 202), last.text
        assert last is not None and last.status_code == 200
        return last.json()["drift"]

    with serve_ready(create_app(s), timeout=60) as client:
        # request events are not what this drift reads: acknowledged, not counted
        msg = cloud_event({"instances": x[:2].tolist()})
        assert client.post("/", headers=dict(msg.headers), content=msg.body).status_code == 204
        # a response with labels only cannot be tested: a 400 saying what is missing
        msg = cloud_event({"outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}]},
                          RESPONSE)
        bad = client.post("/", headers=dict(msg.headers), content=msg.body)
        assert bad.status_code == 400 and "predict_proba" in bad.json()["error"], bad.text
        assert client.get("/status").json()["drift"]["fill"] == 0

        clean = window(client, responses(classifier["url"], x[1000:1200]))
        assert not clean["detected"], clean["pValue"]
        assert set(clean["features"]) == {"proba_0", "proba_1"}
        bright = window(client, responses(classifier["url"], imagedata.brightness(x[1200:1400])))
        assert bright["detected"], bright["pValue"]


def test_spec_model_output_drift_gets_response_events_and_trains_against_the_model():
    doc = {**MONITOR, "spec": {**MONITOR["spec"], "detectors": {"drift": {"preprocess": {"type": "model-output"}}}}}
    plan = build_plan(vspec.monitor_from_dict(doc), _Place())
    d = plan.get("drift")
    assert d.env["VIGIL_DRIFT_PREPROCESS"] == "model-output" and not d.needs_tensorflow
    assert d.train is not None and d.train.model_uri == "file:///m/model.joblib"  # probabilities from the model
    sinks = json.loads(plan.get("logger").env["VIGIL_LOGGER_SINKS"])
    assert {s["name"]: s["types"] for s in sinks}["drift"] == ["response"]
    tabular = build_plan(vspec.monitor_from_dict({**MONITOR, "spec": {**MONITOR["spec"], "detectors": {"drift": {}}}}),
                         _Place())
    assert {s["name"]: s["types"] for s in json.loads(tabular.get("logger").env["VIGIL_LOGGER_SINKS"])}["drift"] == \
        ["request"]
