"""CloudEvents binary mode on a detector's hot path: read an event, write a reply.

For a one-row event the CloudEvents SDK's generic reader and writer (attribute objects,
validation passes, `json` through text) were a fifth of a detector's CPU (issue 13). The
usual event — binary mode, spec version 1.0, a JSON body, plain attribute names — is read
here directly: headers to attributes as the SDK maps them (``ce-`` prefix stripped,
percent-decoded, ``content-type`` as ``datacontenttype``) and the body parsed once with
orjson; a ``time`` attribute in the plain RFC 3339 form senders write (the logger's, the SDK's:
``2026-12-02T16:17:00.123456+00:00`` or ``…Z``) is read by `datetime.fromisoformat` to the same
instant and offset the SDK's `isoparse` gives. Anything else (structured mode, another spec version, any other
``time`` form, an extension name the SDK would refuse, a body orjson does not take, e.g. ``NaN`` literals or
integer tokens of 19 digits or more, which orjson would read as floats) goes through the SDK
exactly as before, so what is accepted and refused — and every value read — is the SDK's.
tests/test_wire.py checks both against the SDK on the same inputs.

`reply` writes the reply event's headers and body as `to_binary_event` does (the SDK adds
``time`` when an event has none; so do we), with the body encoded by orjson.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

import orjson
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings.http import _CE_SAFE_CHARS  # the binding's own percent-encoding rule
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from vigil.fastjson import LONG_INTEGER, has_long_integer  # noqa: F401 - LONG_INTEGER: the definition tests check

#: The attributes CloudEvents 1.0 defines; every other ``ce-`` header is an extension.
SPEC_ATTRIBUTES = frozenset({"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject",
                             "time"})
_EXTENSION = re.compile(r"^[a-z0-9]+$")  # the SDK's rule for extension names
_JSON_CT = JSONFormat.JSON_CONTENT_TYPE_PATTERN
#: orjson reads an integer outside 64 bits as a float where `json` keeps it exact: a body with
#: an integer token of 19+ digits (`vigil.fastjson.has_long_integer`) takes the SDK's path instead.
#: The ``time`` forms read here (fractions of 3 or 6 digits: what `fromisoformat` takes on Python 3.10
#: too); any other form the SDK reads, or refuses, itself.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?(Z|[+-]\d\d:\d\d)\Z")


def _fast(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], Any] | None:
    attrs: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith("ce-"):
            attr = name[3:]
            if attr not in SPEC_ATTRIBUTES and (attr == "data" or not _EXTENSION.match(attr)):
                return None
            attrs[attr] = unquote(value) if "%" in value else value
        elif name == "content-type":
            attrs["datacontenttype"] = value
    if (attrs.get("specversion") != "1.0" or not attrs.get("id") or not attrs.get("source")
            or not attrs.get("type") or attrs.get("subject") == "" or attrs.get("dataschema") == ""
            or not body or not _JSON_CT.match(attrs.get("datacontenttype") or "") or has_long_integer(body)):
        return None
    sent = attrs.get("time")
    if sent is None:
        when = datetime.now(timezone.utc)  # what the SDK's CloudEvent adds to an event without one
    else:
        if not _RFC3339.match(sent):
            return None
        try:  # 'Z' spelled out for Python 3.10's fromisoformat
            when = datetime.fromisoformat(sent[:-1] + "+00:00" if sent.endswith("Z") else sent)
        except ValueError:  # e.g. month 13, second 60: the SDK's error (or reading)
            return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    attrs["time"] = when
    return attrs, data


def read_event(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], Any]:
    """(attributes, data) of an HTTP CloudEvent, as the SDK's `from_http_event` gives them.

    Raises what the SDK raises for an event it refuses. `headers` have lower-case names.
    """
    fast = _fast(headers, body)
    if fast is not None:
        return fast
    event = ce_http.from_http_event(ce_http.HTTPMessage(headers=headers, body=body))
    return event.get_attributes(), event.get_data()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def reply(attributes: dict[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body of a binary-mode reply event (id, source, type and extensions given,
    ``datacontenttype`` application/json), as the SDK's `to_binary_event` writes them."""
    headers = {"ce-specversion": "1.0"}
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = str(value)
        else:
            headers["ce-" + name] = quote(str(value), safe=_CE_SAFE_CHARS)
    headers.setdefault("ce-time", quote(_now(), safe=_CE_SAFE_CHARS))
    try:  # NaN/infinity become null (valid JSON) where the SDK would write bare NaN
        body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # a type orjson does not know: the SDK's encoder
        body = json.dumps(data, default=str).encode()
    return headers, body


def reply_sdk(attributes: dict[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    """The same reply through the SDK (the reference `reply` is tested against)."""
    msg = ce_http.to_binary_event(CloudEvent(attributes=dict(attributes), data=data))
    return dict(msg.headers), msg.body
