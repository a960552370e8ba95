"""Warnings and errors of `vigil up`'s components, echoed to the terminal (DESIGN §11).

Each component started by `vigil up` writes its whole output to ``<workdir>/logs/<name>.log``
(so TensorFlow's C++ start-up lines and INFO chatter stay out of the terminal). `LogEcho`
follows those files and passes on the records at WARNING or above — text
(``TIME LEVEL logger: message``) or JSON (``{"level": ...}``) lines as `vigil.logs` writes
them — prefixed with the component's name, so a user sees what goes wrong where it is
running without opening a log file. Lines that are not our records (a library's own
prints, TensorFlow's ``W0000``/``E0000`` lines) stay in the file only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

#: Record levels passed on to the terminal.
LOUD = frozenset({"WARNING", "ERROR", "CRITICAL"})
_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
#: A record longer than this is cut on the terminal (the log file keeps it whole).
MAX_CHARS = 400


def record_level(line: str) -> str | None:
    """The level of one of our log records (text or JSON), or None for any other line."""
    m = _TEXT.match(line)
    if m:
        return m.group(1)
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            return None
        level = doc.get("level") if isinstance(doc, dict) else None
        return level if isinstance(level, str) else None
    return None


class LogEcho:
    """Follow each component's log file from its current end; `poll()` echoes new loud records."""

    def __init__(self, logs: Path, names: Iterable[str], say: Callable[[str], None]):
        self.logs = logs
        self.say = say
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, bytes] = {}
        for name in names:
            path = logs / f"{name}.log"
            self.offsets[name] = path.stat().st_size if path.exists() else 0
            self.partial[name] = b""

    def poll(self) -> None:
        for name in self.offsets:
            path = self.logs / f"{name}.log"
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[name])
                    chunk = f.read(1 << 20)
            except FileNotFoundError:
                continue
            if not chunk:
                continue
            self.offsets[name] += len(chunk)
            *lines, rest = (self.partial[name] + chunk).split(b"\n")
            self.partial[name] = rest[-(1 << 16):]
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if record_level(line) in LOUD:
                    text = line if len(line) <= MAX_CHARS else line[:MAX_CHARS] + " …"
                    self.say(f"  [{name}] {text}")
