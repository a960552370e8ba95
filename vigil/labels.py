"""Labels and values: what a model's answer or a feedback truth may hold, the one home of those rules.

The metrics service decodes with them what it scores (`vigil_detectors.metrics.scoring`) and
the logger checks with them that feedback fits before it takes it (`vigil.logger.truth`,
DESIGN §11), so a truth the logger accepts is one the metrics service can score. Light:
numpy only, no detector dependencies.

- `values_of`: a raw value (a scalar, a list, rows) or a model-answer body — V2 ``outputs``
  (the ``predict`` tensor, else the first: `vigil.events.v2_output`), V1 ``predictions``,
  Seldon ``data.ndarray`` / ``data.tensor`` — as a non-empty array of numbers or names.
- Classification (`ClassLabels`): a class name, or a whole number (``1.0`` is ``1``), or a
  string of one, that is a class value or an index below the number of classes; one-hot or
  probability rows (argmax, one score per class); for two classes (or none declared) one
  probability of the positive class per instance (≥ 0.5, all of them in [0, 1]). Without
  declared classes, names and numbers are classes as they appear (`ClassLabels.resolve`,
  bounded).
- Regression (`regression_values`): one finite number per instance (or a one-value row).
- No task (`check_labels` with ``task=None``): numbers, names and rows of numbers.

NaN and infinity never fit. A JSON boolean is not a label where a person writes one (a
feedback truth or response: ``"truth": true`` reads as "the model was right", not as class
1), so it is refused there; in a model's own answers it is the number 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from vigil.events import PayloadError, label_array, v2_output


def values_of(body: Any, what: str) -> np.ndarray:
    """The labels/values a body carries, as a non-empty array (see the module docstring)."""
    if isinstance(body, dict):
        if "outputs" in body:
            return _nonempty(v2_output(body["outputs"], what), what)
        if "predictions" in body:
            return _array(body["predictions"], what)
        data = body.get("data")
        if isinstance(data, dict):
            if "ndarray" in data:
                return _array(data["ndarray"], what)
            tensor = data.get("tensor")
            if isinstance(tensor, dict) and "values" in tensor:
                arr = _array(tensor["values"], what)
                try:
                    return arr.reshape([int(s) for s in tensor.get("shape", [arr.size])])
                except (TypeError, ValueError):
                    raise PayloadError("bad_shape", f"{what}: tensor values do not fit its shape") from None
        raise PayloadError("bad_body", f"{what}: expected labels/values, or a body with 'outputs' (V2), "
                                       "'predictions' (V1) or 'data.ndarray' (Seldon)")
    return _array(body, what)


def _array(value: Any, what: str) -> np.ndarray:
    return _nonempty(label_array(value, what), what)


def _nonempty(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.size == 0:
        raise PayloadError("bad_shape", f"{what} is empty")
    return arr


def finite(arr: np.ndarray, what: str) -> np.ndarray:
    """`arr` as float64, refusing names, NaN and infinity."""
    if arr.dtype.kind not in "biuf":
        raise PayloadError("non_numeric", f"{what} must be numbers")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise PayloadError("non_numeric", f"{what} contain NaN or infinity")
    return out


def _refuse_booleans(value: Any, what: str) -> None:
    """A person's labels (a feedback truth or response) hold no JSON boolean, at any depth of rows."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            raise PayloadError("bad_label", f"{what}: {str(v).lower()} is not a label; send a class name, a class "
                                            "index or a number")
        if isinstance(v, list):
            stack.extend(v)


def _rows_to_column(arr: np.ndarray) -> np.ndarray:
    return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr


class ClassLabels:
    """Classification labels: decoded to class indices with declared `classes`, else to class keys
    (int or str) that `resolve` turns into indices, learning up to `max_classes` classes."""

    def __init__(self, classes: Optional[Sequence[Union[str, int]]], max_classes: int = 100):
        self.fixed = classes is not None
        self.max_classes = max_classes if classes is None else len(classes)
        self.names: list[str] = [str(c) for c in classes] if classes is not None else []
        self._index: dict[Any, int] = {}
        if classes is not None:
            if len(classes) < 2:
                raise ValueError("classification needs at least two classes")
            if len(set(self.names)) != len(self.names):
                raise ValueError(f"classes must be unique: {list(classes)}")
            self._index = {name: i for i, name in enumerate(self.names)}

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def decode(self, value: Any, what: str, booleans: bool = False) -> np.ndarray:
        """Labels of n instances as a 1-D array: class indices with fixed classes, else class keys.
        `booleans`: a model's own answer, where true/false are 1/0 (see the module docstring)."""
        if not booleans:
            _refuse_booleans(value, what)
        arr = _rows_to_column(values_of(value, what))
        if arr.ndim == 2:  # one-hot or probability rows: argmax is the class index
            scores = finite(arr, what)
            if self.fixed and arr.shape[1] != self.n_classes:
                raise PayloadError("class_count", f"{what}: rows of {arr.shape[1]} scores, but there are "
                                                  f"{self.n_classes} classes {self.names}")
            return np.argmax(scores, axis=1).astype(np.int64)
        if arr.ndim != 1:
            raise PayloadError("bad_shape", f"{what}: expected one label (or one row of class scores) per "
                                            f"instance, got shape {list(arr.shape)}")
        if arr.dtype.kind in "US":
            return self._from_names(arr.astype(str), what)
        values = finite(arr, what)
        if np.all(values == np.round(values)):
            ints = values.astype(np.int64)
            if not self.fixed:
                return ints
            return np.array([self._from_int(v, what) for v in ints.tolist()], dtype=np.int64)
        if (not self.fixed or self.n_classes == 2) and np.all((values >= 0) & (values <= 1)):
            return (values >= 0.5).astype(np.int64)  # probability of the positive class
        raise PayloadError("bad_label", f"{what}: class labels must be names or whole numbers (or, for two "
                                        f"classes, probabilities of the positive class); got {values[:5].tolist()}")

    def _from_int(self, v: int, what: str) -> int:
        i = self._index.get(str(v))  # classes given as values, e.g. [1, 2, 3]
        if i is not None:
            return i
        if 0 <= v < self.n_classes:
            return v
        raise PayloadError("unknown_class", f"{what}: class {v} is neither one of {self.names} nor an index "
                                            f"below {self.n_classes}")

    def _from_names(self, names: np.ndarray, what: str) -> np.ndarray:
        if not self.fixed:
            return np.array([int(s) if s.lstrip("-").isdigit() else s for s in names.tolist()], dtype=object)
        out = np.empty(len(names), dtype=np.int64)
        for j, s in enumerate(names.tolist()):
            i = self._index.get(s)
            if i is None and s.lstrip("-").isdigit():
                i = self._from_int(int(s), what)
            if i is None:
                raise PayloadError("unknown_class", f"{what}: unknown class {s!r}; classes are {self.names}")
            out[j] = i
        return out

    def resolve(self, keys: np.ndarray) -> np.ndarray:
        """Decoded labels as class indices; without declared classes a new key becomes the next class."""
        if self.fixed:
            return keys.astype(np.int64)
        out = np.empty(len(keys), dtype=np.int64)
        for j, key in enumerate(keys.tolist()):
            i = self._index.get(key)
            if i is None:
                if len(self.names) >= self.max_classes:
                    raise PayloadError("too_many_classes", f"more than {self.max_classes} distinct classes; "
                                                           "configure the monitor's metrics.classes")
                i = self._index[key] = len(self.names)
                self.names.append(str(key))
            out[j] = i
        return out


def regression_values(value: Any, what: str, booleans: bool = False) -> np.ndarray:
    """One finite number per instance (float64, 1-D)."""
    if not booleans:
        _refuse_booleans(value, what)
    arr = _rows_to_column(values_of(value, what))
    if arr.ndim != 1:
        raise PayloadError("bad_shape", f"{what}: expected one value per instance, got shape {list(arr.shape)}")
    return finite(arr, what)


def check_labels(value: Any, task: Optional[str], classes: Optional[Sequence[Union[str, int]]], what: str) -> None:
    """Raise `PayloadError` unless a person's labels (a feedback truth or response) fit `task` and
    `classes`, by the rules the metrics service scores them with."""
    if task == "classification":
        ClassLabels(classes).decode(value, what)
    elif task == "regression":
        regression_values(value, what)
    else:  # no metrics task: numbers, names and rows of numbers
        _refuse_booleans(value, what)
        arr = values_of(value, what)
        if arr.ndim > 2:
            raise PayloadError("bad_shape", f"{what}: expected a value or a row per instance, got shape "
                                            f"{list(arr.shape)}")
        if arr.ndim == 2 or arr.dtype.kind not in "US":
            finite(arr, what)
