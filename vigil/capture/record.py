"""The capture record: one per event, the same fields in JSONL and Parquet (DESIGN §13).

``time`` (ISO 8601, UTC), ``kind`` (request, response, feedback), ``inferenceId``,
``model``, ``monitor``, ``namespace``, ``ceType``, ``data`` (the body as sent), plus what
a replay needs to re-send the event as it was: ``id`` (its ``ce-id``, so a replay is
de-duplicated by the detectors), ``source``, ``endpoint`` and ``contentType``. In JSONL
``data`` is the body as text (``dataEncoding: utf-8``), or base64 (``dataEncoding:
base64``) for a body that is not UTF-8; in Parquet it is a binary column.
File names: ``capture-<UTC start time>-<seq>.jsonl|.parquet`` (`file_name`), so their
names sort in the order they were written.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from vigil.events import ATTR_ENDPOINT, ATTR_INFERENCE_ID, ATTR_MODEL, ATTR_MONITOR, ATTR_NAMESPACE

PREFIX = "capture-"
#: ``capture-20261202T053000Z-000003.jsonl``
NAME = re.compile(r"^capture-(?P<start>\d{8}T\d{6}Z)-(?P<seq>\d{6,})\.(?P<format>jsonl|parquet)$")
#: Parquet columns, in order (the JSONL keys are these plus ``dataEncoding``).
COLUMNS = ("time", "kind", "inferenceId", "model", "monitor", "namespace", "ceType", "id", "source", "endpoint",
           "contentType", "data")


class CaptureError(ValueError):
    """A capture location or file that cannot be read; the message names it."""


def file_name(start: float, seq: int, fmt: str) -> str:
    stamp = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{PREFIX}{stamp}-{seq:06d}.{fmt}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Record:
    time: datetime
    kind: str
    inference_id: str
    model: str
    monitor: str
    namespace: str
    ce_type: str
    id: str
    source: str
    endpoint: str
    content_type: str
    data: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.data)

    def attributes(self) -> dict[str, Any]:
        """The CloudEvent attributes the logger sent the event with (empty ones left out)."""
        attrs = {"id": self.id, "source": self.source, "type": self.ce_type, "specversion": "1.0",
                 "time": self.time, "datacontenttype": self.content_type, ATTR_INFERENCE_ID: self.inference_id,
                 ATTR_MODEL: self.model, ATTR_MONITOR: self.monitor, ATTR_NAMESPACE: self.namespace,
                 ATTR_ENDPOINT: self.endpoint}
        return {k: v for k, v in attrs.items() if v not in (None, "")}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """A JSONL object or a Parquet row -> Record (KeyError/ValueError/TypeError if it is not one)."""
        data = row["data"]
        if isinstance(data, str):
            data = base64.b64decode(data) if row.get("dataEncoding") == "base64" else data.encode("utf-8")
        elif not isinstance(data, bytes):
            raise TypeError(f"data must be a string or bytes, not {type(data).__name__}")
        when = row["time"]
        if isinstance(when, str):
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        if not isinstance(when, datetime):
            raise TypeError(f"time must be a timestamp, not {type(when).__name__}")
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        text = {k: row.get(k) or "" for k in COLUMNS if k not in ("time", "data")}
        if not text["kind"] or not text["ceType"]:
            raise ValueError("kind and ceType are required")
        return cls(time=when, kind=text["kind"], inference_id=text["inferenceId"], model=text["model"],
                   monitor=text["monitor"], namespace=text["namespace"], ce_type=text["ceType"], id=text["id"],
                   source=text["source"], endpoint=text["endpoint"], content_type=text["contentType"], data=data)


def row_from_event(kind: str, attributes: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The logger's event (attributes with ``time`` as a float timestamp, the raw body) -> a row:
    the Parquet columns, with ``time`` still a float."""
    return {"time": attributes["time"], "kind": kind, "inferenceId": attributes.get(ATTR_INFERENCE_ID) or "",
            "model": attributes.get(ATTR_MODEL) or "", "monitor": attributes.get(ATTR_MONITOR) or "",
            "namespace": attributes.get(ATTR_NAMESPACE) or "", "ceType": attributes["type"], "id": attributes["id"],
            "source": attributes.get("source") or "", "endpoint": attributes.get(ATTR_ENDPOINT) or "",
            "contentType": attributes.get("datacontenttype") or "", "data": data}


def json_line(row: dict[str, Any]) -> bytes:
    """One JSONL line (with its newline) for a row of `row_from_event`."""
    doc = dict(row)
    doc["time"] = iso(row["time"])
    try:
        doc["data"], doc["dataEncoding"] = row["data"].decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        doc["data"], doc["dataEncoding"] = base64.b64encode(row["data"]).decode("ascii"), "base64"
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
