"""The event contract (DESIGN.md §3): CloudEvent types and the inference bodies they carry.

The logger emits `dev.vigil.inference.*`; detectors also accept KServe's
(`org.kubeflow.serving.inference.*`) and Seldon Core's (`io.seldon.serving.inference.*`)
types. `event_kind` maps any of them to request / response / feedback.
`decode_instances` and `decode_outputs` turn V2 (Open Inference Protocol) and V1
(`instances` / `predictions`) bodies into 2-D / 1-D numpy arrays, raising `PayloadError`
with a short `reason` (a bounded metric label) and a message that names what is wrong.
`decode_instances` is the numeric, schema-less reader (every value a finite number);
tabular components read requests with `vigil.instances.decode_table`, which adds named
rows, category strings and missing values (DESIGN §8).
With the `shape` of one tensor instance (``spec.schema.shape``, DESIGN §8) instances are
N-D: `decode_instances` returns (n, *shape) and any other instance shape is a 400 naming
the expected and the received shape (`tensor_batch`).
`v2_output` (and `v2_named_output`) reads a model's answers (numbers or class names, `label_array`) from a V2
response, for the components that score or compare predictions (metrics, prediction drift).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from vigil.errors import InvalidInput, Rejected

REQUEST = "dev.vigil.inference.request"
RESPONSE = "dev.vigil.inference.response"
FEEDBACK = "dev.vigil.inference.feedback"
#: Detector replies are `dev.vigil.detection.<kind>`; each component's type is in `vigil.components`.
DETECTION_PREFIX = "dev.vigil.detection"
SOURCE_PREFIX = "/vigil"

#: Extension attributes the logger sets on every event.
ATTR_INFERENCE_ID = "inferenceid"
ATTR_MODEL = "modelname"
ATTR_MONITOR = "monitorname"
ATTR_NAMESPACE = "namespace"
ATTR_ENDPOINT = "endpoint"

_KINDS = {
    REQUEST: "request", RESPONSE: "response", FEEDBACK: "feedback",
    "org.kubeflow.serving.inference.request": "request",
    "org.kubeflow.serving.inference.response": "response",
    "io.seldon.serving.inference.request": "request",
    "io.seldon.serving.inference.response": "response",
    "io.seldon.serving.feedback": "feedback",
    "io.seldon.serving.inference.feedback": "feedback",
}
KIND_TO_TYPE = {"request": REQUEST, "response": RESPONSE, "feedback": FEEDBACK}

#: V2 datatypes we accept (cast to float64 at the edge).
NUMERIC_DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                     "FP16", "FP32", "FP64"}


class PayloadError(InvalidInput, ValueError):
    """An event or request body we cannot use (400). `reason` is a bounded label value."""

    def __init__(self, reason: str, message: str, status: int = 400):
        Rejected.__init__(self, status, reason, message)


def event_kind(ce_type: Optional[str]) -> Optional[str]:
    """'request' | 'response' | 'feedback' for a known CloudEvent type, else None."""
    return _KINDS.get(ce_type or "")


def inference_id(attributes: dict[str, Any]) -> Optional[str]:
    """The inference id of an event: ours, KServe's (`inferenceservicename` events carry `id`), Seldon's."""
    for key in (ATTR_INFERENCE_ID, "requestid", "seldonpuid"):
        if attributes.get(key):
            return str(attributes[key])
    return attributes.get("id")


def float_array(data: Any) -> np.ndarray:
    """``np.asarray(data, dtype=np.float64)``, the same values and errors, faster for a flat list of
    numbers (a V2 image's 3,072 values: ~30% less time): the stdlib `array` converts each int or
    float with the same C conversion NumPy uses; anything else it refuses (nested lists, None,
    strings, an int beyond float64) is read by NumPy itself. tests/test_tensors.py compares the two."""
    if type(data) is list:
        try:
            return np.frombuffer(array("d", data), dtype=np.float64)
        except (TypeError, OverflowError):
            pass
    return np.asarray(data, dtype=np.float64)


def _numeric(data: Any, what: str) -> np.ndarray:
    try:
        arr = float_array(data)
    except (TypeError, ValueError) as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise PayloadError("bad_shape", f"{what} rows must all have the same length") from None
        raise PayloadError("non_numeric", f"{what} must be numbers; got a non-numeric value") from None
    except OverflowError:  # an integer literal beyond float64 (e.g. 400 digits)
        raise PayloadError("out_of_range", f"{what} hold a number too large for float64") from None
    if arr.dtype == object:
        raise PayloadError("bad_shape", f"{what} rows must all have the same length")
    if not np.all(np.isfinite(arr)):
        raise PayloadError("non_numeric", f"{what} contain NaN or infinity")
    return arr


def v2_reshape(arr: np.ndarray, shape: Any, what: str) -> np.ndarray:
    """A V2 tensor's data `arr` reshaped to the tensor's ``shape`` (None: as it is); a 400 if it does not fit."""
    if shape is None:
        return arr
    try:
        return arr.reshape([int(s) for s in shape])
    except (TypeError, ValueError, OverflowError):
        raise PayloadError("bad_shape", f"V2 {what} data of {arr.size} values does not fit shape {shape}") from None


def _v2_tensor(tensor: dict, what: str) -> np.ndarray:
    if not isinstance(tensor, dict) or "data" not in tensor:
        raise PayloadError("bad_body", f"each V2 {what} tensor needs 'data' (and 'shape', 'datatype')")
    datatype = str(tensor.get("datatype", "FP64")).upper()
    if datatype not in NUMERIC_DATATYPES:
        raise PayloadError("non_numeric", f"V2 datatype {datatype!r} is not numeric")
    return v2_reshape(_numeric(tensor["data"], f"V2 {what} data"), tensor.get("shape"), what)


def label_array(value: Any, what: str) -> np.ndarray:
    """Labels or values as a body carries them (a scalar, a list, rows of scores) as an array of
    numbers, or of names where any of them is a string; a scalar becomes one value. Null, ragged
    rows and anything but numbers and strings are a 400."""
    if value is None:
        raise PayloadError("bad_body", f"{what} is missing (null)")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        raise PayloadError("bad_shape", f"{what}: rows must all have the same length") from None
    if arr.dtype == object:
        raise PayloadError("bad_shape", f"{what}: rows must all have the same length and hold numbers or names")
    return arr.reshape(1) if arr.ndim == 0 else arr


def v2_tensors(tensors: Any, key: str, what: str) -> list[dict]:
    """A V2 body's ``inputs`` or ``outputs`` (named by `key`): a non-empty list of tensor objects, else a 400."""
    if not isinstance(tensors, list) or not tensors or not all(isinstance(t, dict) for t in tensors):
        raise PayloadError("bad_body", f"{what}: '{key}' must be a non-empty list of V2 tensors")
    return tensors


def _v2_values(tensor: dict, what: str) -> np.ndarray:
    if "data" not in tensor:
        raise PayloadError("bad_body", f"{what}: each V2 output tensor needs 'data'")
    arr = label_array(tensor["data"], f"V2 {what} data")
    if str(tensor.get("datatype", "")).upper() == "BYTES" and arr.dtype.kind != "U":
        arr = arr.astype(str)
    return v2_reshape(arr, tensor.get("shape"), what)


def v2_output(outputs: Any, what: str) -> np.ndarray:
    """The values (`label_array`; a ``BYTES`` tensor's as names) of the V2 output tensor named
    ``predict`` in a response's ``outputs`` (else of the first one), reshaped to its ``shape``:
    how drift (prediction drift) and metrics read a model's answers."""
    tensors = v2_tensors(outputs, "outputs", what)
    return _v2_values(next((t for t in tensors if t.get("name") == "predict"), tensors[0]), what)


def v2_named_output(outputs: Any, name: str, what: str) -> Optional[np.ndarray]:
    """Like `v2_output`, of the tensor called `name` (``predict_proba``), or None if there is none."""
    tensor = next((t for t in v2_tensors(outputs, "outputs", what) if t.get("name") == name), None)
    return None if tensor is None else _v2_values(tensor, what)


def tensor_batch(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """`arr` as a batch (n, *shape) of tensor instances (an array of exactly `shape` is one instance);
    anything else is a 400 naming the expected and the received shape."""
    expected = tuple(int(d) for d in shape)
    if arr.shape[1:] == expected and arr.shape[0] > 0:
        return arr
    if arr.shape == expected:
        return arr.reshape(1, *expected)
    got = list(arr.shape[1:]) if arr.ndim >= 2 else list(arr.shape)  # the first axis read as the batch
    raise PayloadError("bad_shape", f"expected instances of shape {list(expected)} (a batch [n, "
                                    f"{', '.join(map(str, expected))}]), got instance shape {got} "
                                    f"(the body's array has shape {list(arr.shape)})")


def decode_instances(body: Any, n_features: Optional[int] = None,
                     shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """Rows of features (n, f) from a V2 `inputs` or V1 `instances` body, or with `shape` a batch of
    tensor instances (n, *shape).

    A single instance (1-D, or of exactly `shape`) becomes one row. With several V2 input
    tensors of one column each (one tensor per feature), they are stacked as columns.
    """
    if not isinstance(body, dict):
        raise PayloadError("bad_body", "body must be a JSON object with 'inputs' (V2) or 'instances' (V1)")
    if "inputs" in body:
        tensors = [_v2_tensor(t, "input") for t in v2_tensors(body["inputs"], "inputs", "request")]
        if shape is not None and len(tensors) != 1:
            raise PayloadError("bad_shape", f"a tensor monitor (instance shape {list(shape)}) takes one V2 input "
                                            f"tensor, got {len(tensors)}")
        if len(tensors) == 1:
            arr = tensors[0]
        else:
            cols = [t.reshape(-1, 1) if t.ndim <= 1 else t for t in tensors]
            if len({c.shape[0] for c in cols}) != 1:
                raise PayloadError("bad_shape", "V2 input tensors have different numbers of rows")
            arr = np.hstack(cols)
    elif "instances" in body:
        arr = _numeric(body["instances"], "instances")
    elif "data" in body and isinstance(body["data"], dict) and "ndarray" in body["data"]:
        arr = _numeric(body["data"]["ndarray"], "data.ndarray")  # Seldon's V1 body
    else:
        raise PayloadError("bad_body", "body has neither 'inputs' (V2) nor 'instances' (V1)")
    if shape is not None:
        return tensor_batch(arr, shape)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise PayloadError("bad_shape", f"expected rows of features, got an array of shape {list(arr.shape)}")
    if n_features is not None and arr.shape[1] != n_features:
        raise PayloadError("feature_count", f"expected {n_features} features per row, got {arr.shape[1]}")
    return arr


def decode_outputs(body: Any) -> np.ndarray:
    """Model outputs from a V2 `outputs` or V1 `predictions` body: (n,) labels/values or (n, k) scores."""
    if not isinstance(body, dict):
        raise PayloadError("bad_body", "response body must be a JSON object")
    if "outputs" in body:
        arr = _v2_tensor(v2_tensors(body["outputs"], "outputs", "response")[0], "output")
    elif "predictions" in body:
        arr = _numeric(body["predictions"], "predictions")
    elif "data" in body and isinstance(body["data"], dict) and "ndarray" in body["data"]:
        arr = _numeric(body["data"]["ndarray"], "data.ndarray")
    else:
        raise PayloadError("bad_body", "response has neither 'outputs' (V2) nor 'predictions' (V1)")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def v2_request(rows: np.ndarray, name: str = "input-0") -> dict:
    """A V2 inference request body for rows of features."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    return {"inputs": [{"name": name, "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}
