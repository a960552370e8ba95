"""The one reader of a model's V2 answers (`vigil.events.v2_output`, `v2_named_output`, `label_array`) and its two users.

Prediction drift (`drift.outputs.split_response`) and metrics (`vigil.labels.values_of`)
read a response's ``predict`` tensor through the same function, so a body decodes to the
same labels and fails with the same 400 reason in both; a malformed body is a `PayloadError`
(a counted 4xx), never another exception.
"""

from __future__ import annotations

import numpy as np
import pytest

from vigil.events import PayloadError, label_array, v2_named_output, v2_output
from vigil.labels import values_of
from vigil_detectors.drift.outputs import split_response


def test_predict_is_read_by_name_else_first_and_reshaped():
    outputs = [{"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.9, 0.1, 0.2, 0.8]},
               {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}]
    assert v2_output(outputs, "response").tolist() == [0, 1]
    assert np.shape(v2_named_output(outputs, "predict_proba", "r")) == (2, 2)
    assert v2_named_output(outputs[1:], "predict_proba", "r") is None
    assert v2_output([{"name": "y", "shape": [1, 2], "data": [3, 4]}], "r").tolist() == [[3, 4]]
    pred, proba = split_response({"outputs": outputs})
    assert pred.tolist() == [0, 1] and proba is not None and proba.tolist() == [[0.9, 0.1], [0.2, 0.8]]
    assert values_of({"outputs": outputs}, "response").tolist() == [0, 1]


def test_bytes_tensors_are_names_in_both_readers():
    outputs = [{"name": "predict", "shape": [3], "datatype": "BYTES", "data": [1, 2, 1]}]
    assert v2_output(outputs, "r").tolist() == ["1", "2", "1"]
    assert split_response({"outputs": outputs})[0].tolist() == ["1", "2", "1"]
    assert values_of({"outputs": outputs}, "feedback truth").tolist() == ["1", "2", "1"]
    assert label_array("cat", "truth").tolist() == ["cat"]


@pytest.mark.parametrize("body, reason", [
    ({"outputs": []}, "bad_body"),
    ({"outputs": [{"name": "predict"}]}, "bad_body"),
    ({"outputs": [{"name": "predict", "data": None}]}, "bad_body"),
    ({"outputs": [{"name": "predict", "shape": [3], "data": [0, 1]}]}, "bad_shape"),
    ({"outputs": [{"name": "predict", "shape": ["x"], "data": [0, 1]}]}, "bad_shape"),
    ({"outputs": [{"name": "predict", "data": [[0, 1], [2]]}]}, "bad_shape"),
    ({"outputs": [{"name": "predict", "data": [{"a": 1}]}]}, "bad_shape"),
    ({"predictions": [[0, 1], [2]]}, "bad_shape"),
    ({"predictions": None}, "bad_body"),
])
def test_malformed_answers_fail_alike_in_both_readers(body, reason):
    for read in (split_response, lambda b: values_of(b, "response")):
        with pytest.raises(PayloadError) as err:
            read(body)
        assert err.value.reason == reason, (read, body)


def test_non_numeric_probabilities_are_a_400_in_drift():
    outputs = [{"name": "predict", "shape": [1], "data": [0]},
               {"name": "predict_proba", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]
    with pytest.raises(PayloadError) as err:
        split_response({"outputs": outputs})
    assert err.value.reason == "non_numeric"
    assert np.asarray(split_response({"predictions": [[0.2, 0.8]]})[1]).tolist() == [[0.2, 0.8]]
