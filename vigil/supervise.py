"""Supervision for `vigil up`: restart a component that exits, with backoff, and say why it died.

`vigil up` must not stop inference because a detector crashed (DESIGN §11). `Supervised`
tracks one component's process: when it exits, `exit_reason` says how (``exit code 1``,
``killed by SIGKILL``), the restart waits `delay` seconds — 1 s, doubling to 30 s
(`BACKOFF_INITIAL`, `BACKOFF_MAX`), back to 1 s once a run lasted `STABLE_SECONDS` —
and `restarts` counts the restarts for `vigil status` (``restarts: {component: n}``).
The state is one of ``Starting``, ``Running`` (ready), ``Restarting`` (waiting out the
backoff). Only Ctrl-C / SIGTERM stops the stack (`vigil.local.LocalStack.wait`).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
#: A run that lasted this long resets the backoff: the next crash restarts after 1 s again.
STABLE_SECONDS = 60.0


def exit_reason(returncode: int) -> str:
    """How a process ended, from its return code (negative: the signal that killed it)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Supervised:
    name: str
    proc: subprocess.Popen
    clock: Callable[[], float] = time.monotonic
    restarts: int = 0
    state: str = "Starting"
    delay: float = BACKOFF_INITIAL
    started_at: float = field(default=0.0)
    restart_at: Optional[float] = None
    last_exit: Optional[str] = None

    def __post_init__(self):
        self.started_at = self.clock()

    def exited(self) -> Optional[str]:
        """If the process has just exited: schedule the restart and return the reason, else None."""
        if self.restart_at is not None or self.proc.poll() is None:
            return None
        now = self.clock()
        if now - self.started_at >= STABLE_SECONDS:
            self.delay = BACKOFF_INITIAL
        self.last_exit = exit_reason(self.proc.returncode)
        self.restart_at = now + self.delay
        self.state = "Restarting"
        return self.last_exit

    def due(self) -> bool:
        return self.restart_at is not None and self.clock() >= self.restart_at

    def restarted(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.restarts += 1
        self.restart_at = None
        self.started_at = self.clock()
        self.state = "Starting"
        self.delay = min(self.delay * 2, BACKOFF_MAX)
