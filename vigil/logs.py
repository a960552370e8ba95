"""Logging for every Vigil service: one configuration, one line per record on stderr.

`vigil serve` (each service), `vigil up` (which passes the same options to every
component it starts: `child_args`) and the operator's pods share it. Options:
``--log-level`` (debug | info | warning | error, default ``info``, or ``VIGIL_LOG_LEVEL``)
and ``--log-format`` (``text`` — ``TIME LEVEL LOGGER: message`` — or ``json``, one
object per line with ``time``, ``level``, ``logger``, ``message`` and, for errors,
``exception``; or ``VIGIL_LOG_FORMAT``). Services log as ``vigil.<component>``;
uvicorn's own loggers (``uvicorn``, ``uvicorn.error``; access logs stay off) go through
the same handler. A traceback stays in its record's one line (newlines escaped in text,
a JSON string in json), so a log line is a record for grep and for log shippers alike.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Optional, TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
LEVEL_ENV = "VIGIL_LOG_LEVEL"
FORMAT_ENV = "VIGIL_LOG_FORMAT"
#: Libraries that log every request at INFO; they speak only from WARNING unless debugging.
_CHATTY = ("httpx", "httpcore", "aiohttp.access", "kopf.objects")


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info)
        elif record.stack_info:
            line += " | " + self.formatStack(record.stack_info)
        return line.replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _utc(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: str = "text", stream: Optional[TextIO] = None) -> None:
    """Send every record of this process at `level` or above to `stream` (stderr) in `fmt`."""
    level, fmt = level.lower(), fmt.lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.captureWarnings(True)


def add_arguments(parser) -> None:
    """``--log-level`` and ``--log-format`` on an argparse (sub)parser."""
    parser.add_argument("--log-level", type=str.lower, choices=LEVELS, default=os.environ.get(LEVEL_ENV, "info"),
                        help=f"least severe level logged (default info, or ${LEVEL_ENV})")
    parser.add_argument("--log-format", type=str.lower, choices=FORMATS, default=os.environ.get(FORMAT_ENV, "text"),
                        help=f"text lines or one JSON object per line (default text, or ${FORMAT_ENV})")


def child_args(args) -> list[str]:
    """The same options for a process this one starts (`vigil up` → `vigil serve`)."""
    return ["--log-level", args.log_level, "--log-format", args.log_format]
