"""Tensor instances (``spec.schema.shape``, DESIGN §8) without TensorFlow: spec, CRD rule, plan env,
decoding at every edge (a wrong instance shape is a 400 naming both shapes), `.npy` reference data,
and the detector frame over real HTTP handing a detector (n, *shape) arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import cloud_event, serve_ready
from vigil.data import DataError, load_table
from vigil.events import PayloadError, decode_instances, float_array
from vigil.local import LocalPlacement
from vigil.plan import build_plan, train_argv
from vigil.spec import SpecError, monitor_from_dict
from vigil_detectors.frame import Detector, DetectorSettings, create_detector_app

SHAPE = [32, 32, 3]


def image_monitor(**schema) -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "cifar"},
            "spec": {"model": {"storageUri": "model.keras", "format": "tensorflow", "name": "cifar10"},
                     "schema": schema or {"shape": SHAPE},
                     "reference": {"storageUri": "reference.npy"},
                     "detectors": {"outlier": {"latentDim": 16, "epochs": 3}, "metrics": {"task": "classification"}}}}


def v2(batch: np.ndarray) -> dict:
    return {"inputs": [{"name": "input-0", "shape": list(batch.shape), "datatype": "FP32",
                        "data": batch.ravel().tolist()}]}


# -- spec and plan --------------------------------------------------------------------------------

def test_shape_is_exclusive_with_feature_names_and_categorical():
    m = monitor_from_dict(image_monitor())
    assert m.spec.schema_.instance_shape == (32, 32, 3) and m.spec.schema_.feature_names is None
    for schema, needle in [({"shape": SHAPE, "featureNames": ["a"]}, "exactly one"),
                           ({"categorical": {}}, "exactly one"),
                           ({"shape": SHAPE, "categorical": {"0": 3}}, "categorical needs featureNames"),
                           ({"shape": [32, 0, 3]}, "greater than or equal to 1"),
                           ({"shape": []}, "at least 1")]:
        with pytest.raises(SpecError) as err:
            monitor_from_dict(image_monitor(**schema))
        assert err.value.field.startswith("spec.schema") and needle in err.value.message, (schema, err.value)
    # a tabular monitor is unchanged
    tab = image_monitor(featureNames=["a", "b"])
    assert monitor_from_dict(tab).spec.schema_.names == ["a", "b"]


def test_crd_carries_shape_and_the_exclusivity_rule():
    import yaml

    from vigil.crd import TARGETS

    doc = yaml.safe_load(TARGETS[0].read_text())
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["schema"]
    assert schema["properties"]["shape"]["items"] == {"type": "integer", "minimum": 1}
    assert "required" not in schema
    assert any(r["rule"] == "has(self.featureNames) != has(self.shape)" for r in schema["x-kubernetes-validations"])


def test_plan_renders_shape_for_every_component_that_decodes_instances(tmp_path):
    m = monitor_from_dict(image_monitor())
    plan = build_plan(m, LocalPlacement(tmp_path / "run", tmp_path, 18080))
    assert json.loads(plan.get("model").env["VIGIL_MODEL_SHAPE"]) == SHAPE
    assert json.loads(plan.get("outlier").env["VIGIL_OUTLIER_SHAPE"]) == SHAPE
    assert "VIGIL_OUTLIER_FEATURE_NAMES" not in plan.get("outlier").env
    # the service reads back what the plan rendered
    from vigil_detectors.outlier.settings import OutlierSettings

    assert plan.get("outlier").settings.shape == SHAPE
    assert OutlierSettings.model_validate({"shape": json.loads(plan.get("outlier").env["VIGIL_OUTLIER_SHAPE"])}
                                          ).shape == SHAPE
    (step,) = plan.training
    argv = train_argv(step, str)
    assert json.loads(argv[argv.index("--shape") + 1]) == SHAPE


# -- decoding ---------------------------------------------------------------------------------------

def test_decode_v2_and_v1_batches_of_images():
    batch = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    got = decode_instances(v2(batch), shape=SHAPE)
    assert got.shape == (4, 32, 32, 3) and np.allclose(got, batch)
    v1 = decode_instances({"instances": batch.tolist()}, shape=SHAPE)
    assert v1.shape == (4, 32, 32, 3) and np.array_equal(v1, got)
    one = decode_instances({"instances": batch[0].tolist()}, shape=SHAPE)  # one image without a batch axis
    assert one.shape == (1, 32, 32, 3)


@pytest.mark.parametrize("data", [
    np.round(np.random.default_rng(0).random(3072), 4).tolist(),  # a V2 image as clients send it
    [1, 2.5, True, False, -0.0, 5e-324, 1.7976931348623157e308, 2**53 + 1, 2**63 + 123, 2**70, -(2**70)],
    [1.0, -(2**1000)],
    [[0.5, 1], [2, 3.25]], [1.0, None], [1.0, "2.5"], ["x"], [10**400], [1.0, [2.0]], [], 3.5, (1.0, 2.0),
])
def test_float_array_reads_what_numpy_reads_bit_for_bit(data):
    try:
        expected = np.asarray(data, dtype=np.float64)
    except Exception as exc:  # the same exception type from both
        with pytest.raises(type(exc)):
            float_array(data)
        return
    got = float_array(data)
    assert got.dtype == np.float64 and got.shape == expected.shape and got.flags.writeable
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("body, received", [
    ({"instances": np.zeros((2, 28, 28, 3)).tolist()}, "[28, 28, 3]"),
    ({"instances": np.zeros((2, 32, 32)).tolist()}, "[32, 32]"),  # grey images to a colour model
    ({"inputs": [{"name": "x", "shape": [1, 3072], "datatype": "FP32", "data": [0.0] * 3072}]}, "[3072]"),
    ({"instances": [[1.0, 2.0]]}, "[2]"),
])
def test_wrong_instance_shape_names_expected_and_received(body, received):
    with pytest.raises(PayloadError) as err:
        decode_instances(body, shape=SHAPE)
    assert err.value.status == 400 and err.value.reason == "bad_shape"
    assert "[32, 32, 3]" in str(err.value) and received in str(err.value)


def test_two_v2_inputs_are_refused_for_a_tensor_schema():
    t = {"name": "a", "shape": [1, 32, 32, 3], "datatype": "FP32", "data": [0.0] * 3072}
    with pytest.raises(PayloadError, match="one V2 input tensor"):
        decode_instances({"inputs": [t, dict(t, name="b")]}, shape=SHAPE)


# -- reference data ---------------------------------------------------------------------------------

def test_npy_reference_of_images(tmp_path):
    x = np.random.default_rng(1).integers(0, 255, (10, 32, 32, 3)).astype(np.uint8)
    np.save(tmp_path / "ref.npy", x)
    got = load_table(tmp_path / "ref.npy", shape=SHAPE)
    assert got.shape == (10, 32, 32, 3) and got.dtype == np.float64 and np.array_equal(got, x)
    with pytest.raises(DataError, match=r"expected instances of shape \[28, 28, 3\].*\[10, 32, 32, 3\]"):
        load_table(tmp_path / "ref.npy", shape=[28, 28, 3])
    bad = x.astype(np.float32)
    bad[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="instance 3"):
        load_table(tmp_path / "nan.npy", shape=SHAPE)
    (tmp_path / "ref.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="must be a .npy"):
        load_table(tmp_path / "ref.csv", shape=SHAPE)


# -- the detector frame over HTTP ---------------------------------------------------------------------

class ShapeRecorder(Detector):
    name = "outlier"

    def load(self):
        self.shapes = []

    async def process(self, event):
        self.shapes.append(list(event.instances.shape))
        return None

    def status(self):
        return {"outliers": {"shapes": self.shapes}}


def test_frame_hands_detectors_tensor_batches_and_refuses_other_shapes():
    app = create_detector_app(ShapeRecorder, DetectorSettings(shape=SHAPE))
    batch = np.zeros((3, 32, 32, 3), dtype=np.float32)
    with serve_ready(app) as client:
        for body in (v2(batch), {"instances": batch.tolist()}):
            msg = cloud_event(body)
            assert client.post("/", headers=msg.headers, content=msg.body).status_code == 202
        msg = cloud_event({"instances": np.zeros((2, 16, 16, 3)).tolist()})
        r = client.post("/", headers=msg.headers, content=msg.body)
        assert r.status_code == 400 and r.json()["reason"] == "bad_shape"
        assert "[32, 32, 3]" in r.json()["error"] and "[16, 16, 3]" in r.json()["error"]
        status = client.get("/status").json()
        assert status["outliers"]["shapes"] == [[3, 32, 32, 3], [3, 32, 32, 3]]
        assert 'vigil_events_rejected_total{' in client.get("/metrics").text


def test_decode_table_with_a_tensor_schema_marks_missing_pixels():
    from vigil.instances import InputSchema, decode_table

    schema = InputSchema.from_settings(None, None, SHAPE)
    batch = np.random.default_rng(2).random((3, 32, 32, 3))
    rows = batch.tolist()
    rows[1][4][5][2] = None
    got = decode_table({"instances": rows}, schema)
    assert got.rows.shape == (3, 32, 32, 3) and got.missing.shape == (3, 3072)
    assert got.incomplete.tolist() == [False, True, False]
    assert np.array_equal(got.rows[0], batch[0])
    v2got = decode_table(v2(batch.astype(np.float32)), schema)
    assert v2got.rows.shape == (3, 32, 32, 3) and not v2got.incomplete.any()
    with pytest.raises(PayloadError) as err:
        decode_table({"instances": np.zeros((1, 8, 8, 3)).tolist()}, schema)
    assert err.value.reason == "bad_shape" and "[32, 32, 3]" in str(err.value) and "[8, 8, 3]" in str(err.value)
    inf = batch.copy()
    inf[0, 0, 0, 0] = np.inf
    with pytest.raises(PayloadError, match="infinity"):
        decode_table({"instances": inf.tolist()}, schema)
    assert decode_table({"instances": inf.tolist()}, schema, strict=False).wrong_type[0, 0]


def test_conv_vae_layer_rule():
    from vigil_detectors.outlier import conv

    assert [conv.downsamplings(*hw) for hw in [(32, 32), (8, 8), (28, 28), (6, 6), (64, 48)]] == [3, 2, 2, 1, 3]
    assert conv.filters(3) == [16, 32, 64]
    assert conv.image_shape([8, 8]) == (8, 8, 1)
    assert "4x4x64" in conv.describe([32, 32, 3], 16)
    with pytest.raises(ValueError, match="cannot be down-sampled"):
        conv.downsamplings(5, 5)
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
        conv.image_shape([4, 4, 4, 4])


def test_corruptions_change_images_within_range():
    from vigil import imagedata

    x, y = imagedata.patches(8, seed=3)
    assert x.shape == (8, 32, 32, 3) and set(y.tolist()) <= {0, 1}
    assert np.array_equal(imagedata.patches(8, seed=3)[0], x)  # reproducible
    for name, corrupt in imagedata.CORRUPTIONS.items():
        out = corrupt(x, 5)
        assert out.shape == x.shape and out.dtype == np.float32, name
        assert 0.0 <= out.min() and out.max() <= 1.0, name
        assert np.abs(out - x).mean() > 0.005, name  # severity 5 visibly changes every batch
    with pytest.raises(ValueError, match="severity"):
        imagedata.brightness(x, 6)


class Slow(Detector):
    """Takes its time over each event, as a detector scoring a big batch of images under load does."""

    name = "outlier"

    def load(self):
        self.processed = 0

    async def process(self, event):
        import asyncio

        await asyncio.sleep(1.0)
        self.processed += len(event.instances)
        return None

    def status(self):
        return {"outliers": {"seen": self.processed}}


def test_a_retry_during_slow_processing_is_not_processed_twice():
    import threading

    app = create_detector_app(Slow, DetectorSettings(shape=[2, 2]))
    msg = cloud_event({"instances": np.zeros((3, 2, 2)).tolist()}, id="slow-1")
    with serve_ready(app) as client:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=client.post("/", headers=msg.headers, content=msg.body)))
        t.start()
        import time

        time.sleep(0.3)
        retry = client.post("/", headers=msg.headers, content=msg.body)  # the sender timed out and retries
        assert retry.status_code == 429 and retry.headers["retry-after"] == "1"
        t.join()
        assert first["r"].status_code == 202
        later = client.post("/", headers=msg.headers, content=msg.body)  # the retry after backoff
        assert later.status_code == 202
        assert client.get("/status").json()["outliers"]["seen"] == 3
