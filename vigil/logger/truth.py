"""Does a feedback `truth` fit the monitor's task and classes? Checked at the logger (DESIGN §11).

Feedback whose truth the metrics service could never score is refused where the client
sent it (400 ``bad_truth``), not dropped later out of the client's sight. What fits is
decided by the rules the metrics service scores with (`vigil.labels`, their one home); the
logger adds only the shape of its own API: a truth (or the optional ``response``) is a
label or value per instance, or a list of them, never an object (a model-answer body is
for detector events, not for ``POST /feedback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

from vigil.errors import InvalidInput
from vigil.events import PayloadError
from vigil.labels import check_labels


def check_truth(truth: Any, task: Optional[str] = None, classes: Optional[Sequence[Union[str, int]]] = None,
                what: str = "feedback truth") -> None:
    """Raise `InvalidInput` (reason ``bad_truth``) unless `truth` fits `task` and `classes`.

    Also used for a feedback's optional ``response`` (the model's answer, scored the same way)."""
    if isinstance(truth, dict):
        raise InvalidInput("bad_truth", f"{what} holds an object; send a label or value per instance")
    try:
        check_labels(truth, task, classes, what)
    except PayloadError as exc:
        raise InvalidInput("bad_truth", exc.message) from None
