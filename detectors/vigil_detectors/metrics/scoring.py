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

What a label or value may be (class names or indices, score rows, probabilities of the
positive class, finite numbers) is `vigil.labels`, which the logger checks feedback with too;
each scorer decodes with it.

Regression (`RegressionScorer`): MAE, MSE, RMSE and R² = 1 − SSE/SST (scikit-learn's
conventions: SST = 0 gives 1.0 for a perfect fit, else 0.0; undefined below two instances).
Cumulative sums use Welford's update for SST; the window is recomputed from its ring buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from vigil.events import PayloadError
from vigil.labels import ClassLabels, regression_values


def _same_rows(truth: np.ndarray, pred: np.ndarray) -> None:
    """A truth per predicted row, or the pair cannot be scored (422: both bodies were valid on their own)."""
    if len(truth) != len(pred):
        raise PayloadError("row_mismatch", f"feedback has {len(truth)} truth values but the response has "
                                           f"{len(pred)} rows", status=422)


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
        self.labels = ClassLabels(classes, max_classes)
        k = self.labels.n_classes
        self.cm = np.zeros((k, k), dtype=np.int64)
        self.window = int(window)
        self.win_cm = np.zeros((k, k), dtype=np.int64)
        self._ring = np.zeros((self.window, 2), dtype=np.int64)
        self._filled = 0
        self._pos = 0
        self.seq = 0  # instances ever scored: instance s sits in ring slot s % window while s >= seq - filled

    @property
    def names(self) -> list[str]:
        return self.labels.names

    @property
    def n_classes(self) -> int:
        return self.labels.n_classes

    def decode(self, value: Any, what: str, booleans: bool = False) -> np.ndarray:
        """Labels of n instances (`vigil.labels.ClassLabels.decode`)."""
        return self.labels.decode(value, what, booleans)

    # -- updating -------------------------------------------------------------------------
    def update(self, truth: np.ndarray, pred: np.ndarray) -> int:
        """Score n joined instances (decoded labels); returns n."""
        _same_rows(truth, pred)
        t, p = self.labels.resolve(truth), self.labels.resolve(pred)
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
        _same_rows(new_truth, pred)
        old_t, new_t, p = (self.labels.resolve(a) for a in (old_truth, new_truth, pred))
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

    def decode(self, value: Any, what: str, booleans: bool = False) -> np.ndarray:
        """One value per instance (`vigil.labels.regression_values`)."""
        return regression_values(value, what, booleans)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> int:
        _same_rows(truth, pred)
        self._total.add(truth, pred)
        for y, yhat in zip(truth.tolist(), pred.tolist(), strict=True):
            self._ring[self._pos] = (y, yhat)
            self._pos = (self._pos + 1) % self.window
            self._filled = min(self._filled + 1, self.window)
        self.seq += len(truth)
        return len(truth)

    def correct(self, start: int, old_truth: np.ndarray, new_truth: np.ndarray, pred: np.ndarray) -> None:
        """Replace the truth of instances scored from sequence number `start` (see the classifier's)."""
        _same_rows(new_truth, pred)
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
