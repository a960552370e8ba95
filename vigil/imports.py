"""Keep heavy optional libraries out of a process that never uses them.

alibi imports every explainer in `alibi.explainers` when any one is imported, and a few of
them import TensorFlow (or PyTorch) if it is installed — about 450 MB of RSS and seconds of
start-up in the explainer service, which calls the model server as a black box and never
runs a TensorFlow graph itself. alibi treats those frameworks as optional
(`alibi.utils.missing_optional_dependency`): when the import fails, the explainers that
need them become placeholders that raise only if used. `keep_out` makes those imports fail
for the duration of a block, for modules this process has not imported yet (modules already
imported stay usable); after the block, other code may import them as usual — a process-wide
ban would break anything else running in the same interpreter (a test run, say).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator

#: The frameworks only the TensorFlow/PyTorch parts of alibi (and alibi-detect) need.
FRAMEWORKS = ("tensorflow", "tf_keras", "keras", "torch")


class _KeepOut(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (kept out of this process by vigil.imports)",
                                      name=fullname)
        return None


def install(names: tuple[str, ...] = FRAMEWORKS) -> _KeepOut | None:
    """Until `sys.meta_path.remove(finder)`, importing any of `names` not yet imported fails."""
    blocked = frozenset(n for n in names if n not in sys.modules)
    if not blocked:
        return None
    finder = _KeepOut(blocked)
    sys.meta_path.insert(0, finder)
    return finder


@contextlib.contextmanager
def keep_out(names: tuple[str, ...] = FRAMEWORKS) -> Iterator[None]:
    """`install` for the duration of a block (e.g. fitting an explainer inside `vigil train`)."""
    finder = install(names)
    try:
        yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
