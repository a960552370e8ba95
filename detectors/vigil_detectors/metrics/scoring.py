"""Scoring joined (truth, prediction) instances: classification and regression metrics.

Both scorers keep a cumulative summary (everything since start) and a summary of the
recent window (the last `window` joined instances), and answer `cumulative()` /
`recent()` with plain numbers the detector exports.

Classification (`ClassificationScorer`) keeps K×K confusion matrices (rows truth, columns
prediction); everything else follows from them with the standard one-vs-rest definitions:
TP_c = cm[c, c], FP_c = column sum − TP_c, FN_c = row sum − TP_c, TN_c = n − TP_c − FP_c − FN_c;
accuracy = trace / n; precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN), each
0 when its denominator is 0 (scikit-learn's ``zero_division=0``). The window matrix is
updated exactly (add the new pair, subtract the one leaving the ring buffer).

Labels may arrive as class names or indices, as one-hot or probability rows (argmax), or,
for two classes, as one probability of the positive class (≥ 0.5). With `classes` given,
names map to their position in the list and index i means classes[i]; without, classes are
learned as they appear (bounded).

Regression (`RegressionScorer`): MAE, MSE, RMSE and R² = 1 − SSE/SST (scikit-learn's
conventions: SST = 0 gives 1.0 for a perfect fit, else 0.0; undefined below two instances).
Cumulative sums use Welford's update for SST; the window is recomputed from its ring buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from vigil.events import PayloadError, label_array, v2_output


def values_of(body: Any, what: str) -> np.ndarray:
    """The labels/values a body carries, as an array.

    Accepts a raw value (scalar or nested list), or a V2 body (the output tensor named
    ``predict`` if there is one, else the first), a V1 body (``predictions``) or a Seldon
    body (``data.ndarray`` / ``data.tensor``).
    """
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


def _finite(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise PayloadError("non_numeric", f"{what} must be numbers")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise PayloadError("non_numeric", f"{what} contain NaN or infinity")
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass
class ClassScores:
    """Metrics of one confusion matrix."""

    n: int
    accuracy: Optional[float]
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> ClassScores:
        n = int(cm.sum())
        tp = np.diag(cm).astype(np.int64)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        tn = n - tp - fp - fn
        return cls(n=n, accuracy=float(tp.sum() / n) if n else None, tp=tp, fp=fp, tn=tn, fn=fn,
                   precision=_safe_div(tp, tp + fp), recall=_safe_div(tp, tp + fn),
                   f1=_safe_div(2 * tp, 2 * tp + fp + fn))


class ClassificationScorer:
    def __init__(self, classes: Optional[Sequence[Union[str, int]]], window: int, max_classes: int = 100):
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
        k = len(self.names)
        self.cm = np.zeros((k, k), dtype=np.int64)
        self.window = int(window)
        self.win_cm = np.zeros((k, k), dtype=np.int64)
        self._ring = np.zeros((self.window, 2), dtype=np.int64)
        self._filled = 0
        self._pos = 0
        self.seq = 0  # instances ever scored: instance s sits in ring slot s % window while s >= seq - filled

    @property
    def n_classes(self) -> int:
        return len(self.names)

    # -- decoding -------------------------------------------------------------------------
    def decode(self, value: Any, what: str) -> np.ndarray:
        """Labels of n instances as a 1-D array: class indices with fixed classes, else
        class keys (int or str) resolved to indices when the pair is scored."""
        arr = values_of(value, what)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:  # one-hot or probability rows: argmax is the class index
            scores = _finite(arr, what)
            if self.fixed and arr.shape[1] != self.n_classes:
                raise PayloadError("class_count", f"{what}: rows of {arr.shape[1]} scores, but there are "
                                                  f"{self.n_classes} classes {self.names}")
            return np.argmax(scores, axis=1).astype(np.int64)
        if arr.ndim != 1:
            raise PayloadError("bad_shape", f"{what}: expected one label (or one row of class scores) per "
                                            f"instance, got shape {list(arr.shape)}")
        if arr.dtype.kind in "US":
            return self._from_names(arr.astype(str), what)
        values = _finite(arr, what)
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

    def _resolve(self, keys: np.ndarray) -> np.ndarray:
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

    # -- updating -------------------------------------------------------------------------
    def update(self, truth: np.ndarray, pred: np.ndarray) -> int:
        """Score n joined instances (decoded labels); returns n."""
        if len(truth) != len(pred):
            raise PayloadError("row_mismatch", f"feedback has {len(truth)} truth values but the response has "
                                               f"{len(pred)} rows", status=422)
        t, p = self._resolve(truth), self._resolve(pred)
        k = self.n_classes
        if self.cm.shape[0] < k:
            self.cm = _grow(self.cm, k)
            self.win_cm = _grow(self.win_cm, k)
        np.add.at(self.cm, (t, p), 1)
        for ti, pi in zip(t.tolist(), p.tolist(), strict=True):
            if self._filled == self.window:
                old_t, old_p = self._ring[self._pos]
                self.win_cm[old_t, old_p] -= 1
            else:
                self._filled += 1
            self._ring[self._pos] = (ti, pi)
            self.win_cm[ti, pi] += 1
            self._pos = (self._pos + 1) % self.window
        self.seq += len(t)
        return len(t)

    def correct(self, start: int, old_truth: np.ndarray, new_truth: np.ndarray, pred: np.ndarray) -> None:
        """Replace the truth of instances scored from sequence number `start` (later feedback
        for the same inference): cumulative counts and, where still in it, the recent window."""
        if len(new_truth) != len(pred):
            raise PayloadError("row_mismatch", f"feedback has {len(new_truth)} truth values but the response has "
                                               f"{len(pred)} rows", status=422)
        old_t, new_t, p = self._resolve(old_truth), self._resolve(new_truth), self._resolve(pred)
        k = self.n_classes
        if self.cm.shape[0] < k:
            self.cm = _grow(self.cm, k)
            self.win_cm = _grow(self.win_cm, k)
        np.add.at(self.cm, (old_t, p), -1)
        np.add.at(self.cm, (new_t, p), 1)
        oldest = self.seq - self._filled
        for j, (a, b, pi) in enumerate(zip(old_t.tolist(), new_t.tolist(), p.tolist(), strict=True)):
            if start + j >= oldest:
                self.win_cm[a, pi] -= 1
                self.win_cm[b, pi] += 1
                self._ring[(start + j) % self.window] = (b, pi)

    def cumulative(self) -> ClassScores:
        return ClassScores.from_confusion(self.cm)

    def recent(self) -> ClassScores:
        return ClassScores.from_confusion(self.win_cm)

    @property
    def window_fill(self) -> int:
        return self._filled


def _grow(cm: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((k, k), dtype=np.int64)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


@dataclass
class RegressionScores:
    n: int
    mae: Optional[float] = None
    mse: Optional[float] = None
    rmse: Optional[float] = None
    r2: Optional[float] = None

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mae": self.mae, "mse": self.mse, "rmse": self.rmse, "r2": self.r2}


def _r2(sse: float, sst: float, n: int) -> Optional[float]:
    if n < 2:
        return None
    if sst == 0:
        return 1.0 if sse == 0 else 0.0
    return 1.0 - sse / sst


@dataclass
class _Running:
    n: int = 0
    abs_sum: float = 0.0
    sse: float = 0.0
    mean: float = 0.0
    m2: float = 0.0  # Welford: sum of squared deviations of y from its mean (SST)

    def add(self, y: np.ndarray, yhat: np.ndarray) -> None:
        err = y - yhat
        self.abs_sum += float(np.abs(err).sum())
        self.sse += float((err * err).sum())
        # Chan et al.'s parallel Welford merge of this batch into the running mean/M2.
        nb = len(y)
        mean_b = float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean += delta * nb / n
        self.m2 += m2_b + delta * delta * self.n * nb / n
        self.n = n

    def remove(self, y: np.ndarray, yhat: np.ndarray) -> None:
        """Undo `add` of these values (the reverse of the merge above)."""
        err = y - yhat
        self.abs_sum -= float(np.abs(err).sum())
        self.sse -= float((err * err).sum())
        nb = len(y)
        n_a = self.n - nb
        if n_a <= 0:
            self.n, self.mean, self.m2 = 0, 0.0, 0.0
            return
        mean_b = float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        mean_a = (self.n * self.mean - nb * mean_b) / n_a
        delta = mean_b - mean_a
        self.m2 = max(0.0, self.m2 - m2_b - delta * delta * n_a * nb / self.n)
        self.mean, self.n = mean_a, n_a


class RegressionScorer:
    def __init__(self, window: int):
        self.window = int(window)
        self._total = _Running()
        self._ring = np.zeros((self.window, 2), dtype=np.float64)
        self._filled = 0
        self._pos = 0
        self.seq = 0  # instances ever scored (see ClassificationScorer.seq)

    def decode(self, value: Any, what: str) -> np.ndarray:
        arr = values_of(value, what)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise PayloadError("bad_shape", f"{what}: expected one value per instance, got shape {list(arr.shape)}")
        return _finite(arr, what)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> int:
        if len(truth) != len(pred):
            raise PayloadError("row_mismatch", f"feedback has {len(truth)} truth values but the response has "
                                               f"{len(pred)} rows", status=422)
        self._total.add(truth, pred)
        for y, yhat in zip(truth.tolist(), pred.tolist(), strict=True):
            self._ring[self._pos] = (y, yhat)
            self._pos = (self._pos + 1) % self.window
            self._filled = min(self._filled + 1, self.window)
        self.seq += len(truth)
        return len(truth)

    def correct(self, start: int, old_truth: np.ndarray, new_truth: np.ndarray, pred: np.ndarray) -> None:
        """Replace the truth of instances scored from sequence number `start` (see the classifier's)."""
        if len(new_truth) != len(pred):
            raise PayloadError("row_mismatch", f"feedback has {len(new_truth)} truth values but the response has "
                                               f"{len(pred)} rows", status=422)
        self._total.remove(old_truth, pred)
        self._total.add(new_truth, pred)
        oldest = self.seq - self._filled
        for j, (y, yhat) in enumerate(zip(new_truth.tolist(), pred.tolist(), strict=True)):
            if start + j >= oldest:
                self._ring[(start + j) % self.window] = (y, yhat)

    def cumulative(self) -> RegressionScores:
        t = self._total
        if t.n == 0:
            return RegressionScores(0)
        mse = t.sse / t.n
        return RegressionScores(t.n, t.abs_sum / t.n, mse, float(np.sqrt(mse)), _r2(t.sse, t.m2, t.n))

    def recent(self) -> RegressionScores:
        n = self._filled
        if n == 0:
            return RegressionScores(0)
        y, yhat = self._ring[:n, 0], self._ring[:n, 1]
        err = y - yhat
        sse = float((err * err).sum())
        sst = float(((y - y.mean()) ** 2).sum())
        mse = sse / n
        return RegressionScores(n, float(np.abs(err).mean()), mse, float(np.sqrt(mse)), _r2(sse, sst, n))

    @property
    def window_fill(self) -> int:
        return self._filled
