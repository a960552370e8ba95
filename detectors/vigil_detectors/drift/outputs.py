"""Prediction and label drift: the model's outputs (response events) and feedback truths as drift features.

`drift.target: inputs | outputs | both` (DESIGN §10). An `OutputEncoding` turns a response
body into rows of drift features, fixed at fit time from the **reference outputs**:

- ``prediction``: the ``predict`` output (V2 tensor of that name, else the first; V1
  ``predictions``). A classifier's labels — names (V2 ``BYTES``) or whole numbers, or any
  output when the task is ``classification`` — are a categorical feature tested with
  chi-squared: names are coded by their place in the sorted reference labels (a name the
  reference never produced gets the next code, its own bin). A regressor's values are a
  numeric feature tested with the monitor's numeric statistic;
- ``proba_<class>``: one numeric feature per column of ``predict_proba`` (V2), the class
  named by ``classes`` (the metrics block) or its column index.

**Reference outputs** are computed by running the model on the reference at fit time: the
drift service posts the reference rows (V2, in batches) to the model server it monitors —
the same server whose responses it then reads, so reference and live outputs are decoded
and encoded identically, for any model format or an external endpoint, and the drift
process never loads the model (or TensorFlow). A reference file's label column is not
used: the reference holds features only (``schema.featureNames``).

**Label drift** (when the monitor has a metrics block): feedback truths, encoded like
``prediction``, as the feature ``label``, against the model's predictions on the reference
(the reference has no truths; for a model worth monitoring its predicted class shares are
the reference's label shares up to its error rate).

Each target has its own window and its own `DriftSuite`, so corrections for multiple
testing run over inputs and outputs separately.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from vigil.events import PayloadError, label_array, v2_named_output, v2_output

log = logging.getLogger("vigil.drift")

BATCH = 500
PREDICTION, LABEL = "prediction", "label"


def split_response(body: Any) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(predict (n,), predict_proba (n, k) or None) from a V2 or V1 response body."""
    if not isinstance(body, dict):
        raise PayloadError("bad_body", "response body must be a JSON object")
    proba = None
    if "outputs" in body:
        pred = v2_output(body["outputs"], "response")
        proba = v2_named_output(body["outputs"], "predict_proba", "response predict_proba")
    elif "predictions" in body:
        pred = label_array(body["predictions"], "predictions")
    else:
        raise PayloadError("bad_body", "response has neither 'outputs' (V2) nor 'predictions' (V1)")
    if pred.ndim == 0:
        pred = pred.reshape(1)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim == 2 and pred.dtype.kind in "fiu" and proba is None:  # V1 scores: the rows are probabilities
        proba, pred = pred.astype(np.float64), np.argmax(pred, axis=1)
    if pred.ndim != 1:
        raise PayloadError("bad_shape", f"response: expected one prediction per instance, got shape {list(pred.shape)}")
    if proba is not None:
        if proba.dtype.kind not in "biuf":
            raise PayloadError("non_numeric", "response: predict_proba must be numbers")
        proba = proba.astype(np.float64)
        if proba.ndim != 2 or proba.shape[0] != pred.shape[0]:
            raise PayloadError("bad_shape", f"response: predict_proba of shape {list(proba.shape)} for "
                                            f"{pred.shape[0]} predictions")
    return pred, proba


@dataclass
class OutputEncoding:
    """How predictions (and probabilities) become drift features; fitted from the reference outputs."""

    classification: bool
    labels: Optional[list[str]] = None  # string labels, sorted: code = index
    n_proba: int = 0
    classes: Sequence[Any] = ()
    names: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, pred: np.ndarray, proba: Optional[np.ndarray], *, task: Optional[str],
            classes: Optional[Sequence[Any]]) -> OutputEncoding:
        strings = pred.dtype.kind in "US"
        if task is not None:
            classification = task == "classification"
        else:
            classification = strings or bool(np.all(np.mod(pred.astype(np.float64), 1) == 0))
        labels = sorted(set(pred.tolist())) if strings else None
        k = 0 if proba is None else int(proba.shape[1])
        names_of = [str(c) for c in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]
        enc = cls(classification, labels, k, tuple(names_of), [PREDICTION] + [f"proba_{c}" for c in names_of])
        return enc

    @property
    def categorical(self) -> dict[int, Optional[int]]:
        """The suite's categorical block: ``prediction`` for a classifier."""
        return {0: None} if self.classification else {}

    def codes(self, values: np.ndarray, what: str) -> np.ndarray:
        """Predictions or truths (n,) as the ``prediction`` feature's numbers."""
        if self.labels is not None:
            index = {v: i for i, v in enumerate(self.labels)}
            return np.array([index.get(str(v), len(self.labels)) for v in values.tolist()], dtype=np.float64)
        if values.dtype.kind in "US":
            raise PayloadError("non_numeric", f"{what}: the reference predictions are numbers, got names")
        out = values.astype(np.float64)
        if not np.isfinite(out).all():
            raise PayloadError("out_of_range", f"{what}: predictions must be finite numbers")
        return out

    def encode(self, body: Any) -> np.ndarray:
        """A response body as rows (n, 1 + n_proba) of drift features."""
        pred, proba = split_response(body)
        cols = [self.codes(pred, "response")]
        if self.n_proba:
            if proba is None or proba.shape[1] != self.n_proba:
                got = "none" if proba is None else str(proba.shape[1])
                raise PayloadError("feature_count", f"response: expected {self.n_proba} predict_proba columns "
                                                    f"(as on the reference), got {got}")
            if not np.isfinite(proba).all():
                raise PayloadError("out_of_range", "response: predict_proba values must be finite")
            cols += [proba[:, j] for j in range(self.n_proba)]
        return np.column_stack(cols)

    def truths(self, data: Any) -> np.ndarray:
        """A feedback body's truths as rows (n, 1) of the ``label`` feature."""
        if not isinstance(data, dict) or "truth" not in data:
            raise PayloadError("bad_body", "feedback needs 'truth' (the true label(s) or value(s))")
        truth = np.asarray(data["truth"])
        if truth.dtype == object:
            truth = np.asarray([str(v) for v in np.ravel(truth)], dtype=str)
        truth = truth.reshape(-1) if truth.ndim <= 1 or truth.shape[-1] == 1 else truth
        if truth.ndim != 1:
            raise PayloadError("bad_shape", f"feedback: expected one truth per instance, got shape {list(truth.shape)}")
        if truth.dtype.kind not in "USfiub":
            raise PayloadError("bad_body", "feedback: truths must be labels or numbers")
        return self.codes(truth, "feedback truth")[:, None]


def reference_outputs(x_ref: np.ndarray, model_url: str, model_name: str, *, timeout: float = 120.0,
                      token: Optional[str] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Run the model on the reference (V2, `BATCH` rows per request); waits up to `timeout` for the server."""
    import httpx

    from vigil.events import v2_request

    url = f"{model_url.rstrip('/')}/v2/models/{model_name}/infer"
    headers = {"authorization": f"Bearer {token}"} if token else {}
    preds, probas = [], []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(x_ref), BATCH):
            while True:
                try:
                    r = client.post(url, json=v2_request(x_ref[i:i + BATCH]), headers=headers)
                    if r.status_code == 200:
                        break
                    problem = f"HTTP {r.status_code}: {r.text[:200]}"
                    if r.status_code < 500 and r.status_code not in (404, 408, 429):
                        raise RuntimeError(f"the model refused the reference rows: {problem}")
                except httpx.HTTPError as exc:
                    problem = str(exc)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the model server at {url} did not score the reference: {problem}")
                time.sleep(0.5)
            pred, proba = split_response(r.json())
            preds.append(pred)
            if proba is not None:
                probas.append(proba)
    pred = np.concatenate(preds)
    proba = np.concatenate(probas) if probas and len(probas) == len(preds) else None
    log.info("drift: reference outputs from the model (%d rows%s)", len(pred),
             f", {proba.shape[1]} class scores" if proba is not None else "")
    return pred, proba
