"""Does a feedback `truth` fit the monitor's task and classes? Checked at the logger (DESIGN §11).

Feedback whose truth the metrics service could never score is refused where the client
sent it (400 ``bad_truth``), not dropped later out of the client's sight. What fits
mirrors what the metrics service scores (`vigil_detectors.metrics.scoring`):

- one value per instance: a scalar, or a list of scalars;
- classification: a class name from ``classes``, a class value from ``classes``, an index
  below the number of classes (a whole number; ``1.0`` is ``1``), or — with two classes
  or none declared — the probability of the positive class; a row of class scores per
  instance (one score per class) fits too;
- regression: a finite number (or a one-value row);
- with no metrics task configured: finite numbers, strings and such rows, nothing deeper.

NaN, infinity, booleans, objects and nesting deeper than rows never fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

from vigil.errors import InvalidInput


def _bad(message: str) -> InvalidInput:
    return InvalidInput("bad_truth", f"feedback {message}")


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:  # a huge integer literal
        return None
    return f if math.isfinite(f) else None


def _label(v: Any, task: Optional[str], classes: Optional[Sequence[Any]]) -> None:
    if isinstance(v, str):
        if task == "regression":
            raise _bad(f"{v!r} is not a number (the task is regression)")
        if classes is not None and v not in {str(c) for c in classes}:
            raise _bad(f"{v!r} is not one of the classes {list(classes)}")
        return
    f = _number(v)
    if f is None:
        raise _bad(f"{v!r} is not a label: use a class name, a class index or a finite number")
    if task != "classification":
        return
    whole = f == round(f)
    if classes is None:
        if whole or 0.0 <= f <= 1.0:  # a label, or the probability of the positive class
            return
        raise _bad(f"{v!r} is not a class: use a class name or a whole-number index")
    k = len(classes)
    if whole:
        if 0 <= f < k or str(int(f)) in {str(c) for c in classes}:
            return
        raise _bad(f"{v!r} is neither one of the classes {list(classes)} nor an index below {k}")
    if k == 2 and 0.0 <= f <= 1.0:
        return  # probability of the positive class
    raise _bad(f"{v!r} is not a class: use a class name or a whole-number index")


def _row(row: list, task: Optional[str], classes: Optional[Sequence[Any]]) -> None:
    if not row or any(_number(x) is None for x in row):
        raise _bad("rows must be non-empty lists of finite numbers (one score per class)")
    if task == "regression" and len(row) != 1:
        raise _bad(f"rows for regression hold one value, got {len(row)}")
    if task == "classification" and classes is not None and len(row) not in (1, len(classes)):
        raise _bad(f"rows of {len(row)} scores, but there are {len(classes)} classes")
    if len(row) == 1:
        _label(row[0], task, classes)


def check_truth(truth: Any, task: Optional[str] = None, classes: Optional[Sequence[Any]] = None) -> None:
    """Raise `InvalidInput` (reason ``bad_truth``) unless `truth` fits `task` and `classes`.

    Also used for a feedback's optional ``response`` (the model's answer, scored the same way)."""
    values = truth if isinstance(truth, list) else [truth]
    if not values:
        raise _bad("is an empty list")
    rows = [isinstance(v, list) for v in values]
    if any(rows) and not all(rows):
        raise _bad("mixes values and rows")
    for v in values:
        if isinstance(v, list):
            _row(v, task, classes)
        elif isinstance(v, (dict, type(None))):
            raise _bad(f"holds {'an object' if v is not None else 'null'}; send a label or value per instance")
        else:
            _label(v, task, classes)
