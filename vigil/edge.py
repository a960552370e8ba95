"""The HTTP edge every Vigil service shares: limits, checks, the JSON error answer, counting.

Every request a service reads goes through here first:

- `check_headers`: the header block is at most `MAX_HEADER_BYTES` (else 431), a body in
  a content encoding we do not read is 415 (only ``identity``), and a header we read
  that appears twice with different values is 400 (which one would we believe?);
- `read_body`: the one body-size limit, ``VIGIL_MAX_BODY_BYTES`` (default 32 MiB, the
  same at every edge). A declared Content-Length over it is refused before anything is
  read; a chunked body is read only until it passes the limit;
- `parse_json`: JSON that does not parse, or nests deeper than the parser can go, is 400
  (read by `vigil.fastjson.loads`: `json`'s values at orjson's speed).

A refusal is a `vigil.errors.Rejected`; `Edge.reject` answers it as
``{"error": message, "reason": reason}`` with its status and counts it in
``vigil_events_rejected_total{reason}``. `Edge.install` makes a FastAPI app answer
every error that way: refusals raised in handlers, unknown routes and methods (404, 405),
FastAPI's request validation (422), and — a bug, logged with its traceback — anything
else (500, reason ``internal``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil import fastjson
from vigil.auth import UNAUTHORIZED, BearerAuth, token_from_env
from vigil.errors import (
    HeadersTooLarge,
    InvalidInput,
    PayloadTooLarge,
    Rejected,
    Unauthorized,
    UnsupportedMediaType,
    VigilError,
    error_body,
    status_of,
)
from vigil.health import RecentHealth
from vigil.telemetry import ServiceMetrics

MAX_BODY_ENV = "VIGIL_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: Request line aside, the most header bytes (names + values) an edge reads.
MAX_HEADER_BYTES = 64 * 1024
#: Headers some edge interprets; each may appear once (or repeat with the same value).
SINGLE_HEADERS = frozenset({b"content-type", b"content-length", b"content-encoding", b"transfer-encoding",
                            b"authorization", b"x-request-id", b"x-inference-id"})
_JSON = "application/json"


def max_body_bytes() -> int:
    """The body-size limit of every edge: ``VIGIL_MAX_BODY_BYTES`` (bytes), default 32 MiB."""
    raw = os.environ.get(MAX_BODY_ENV, "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_MAX_BODY_BYTES
    except ValueError:
        raise VigilError(f"{MAX_BODY_ENV}={raw!r} is not a number of bytes") from None
    if value < 1024:
        raise VigilError(f"{MAX_BODY_ENV}={value} is below the smallest useful limit of 1024 bytes")
    return value


class BodyTooLarge(PayloadTooLarge):
    """The body is over the limit; the message says by how much."""

    def __init__(self, message: str):
        super().__init__("too_large", message)


def check_headers(raw: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse oversized header blocks (431), encoded bodies (415) and conflicting duplicates (400)."""
    size = 0
    seen: dict[bytes, bytes] = {}
    for name, value in raw:
        size += len(name) + len(value)
        if name in SINGLE_HEADERS or name.startswith(b"ce-"):
            if seen.setdefault(name, value) != value:
                raise InvalidInput("duplicate_header", f"header {name.decode('latin-1')!r} appears twice with "
                                                       "different values; send it once")
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge("headers_too_large", f"request headers of {size} bytes are over the limit of "
                                                   f"{MAX_HEADER_BYTES} bytes")
    encoding = seen.get(b"content-encoding", b"identity").strip().lower()
    if encoding not in (b"identity", b""):
        raise UnsupportedMediaType("content_encoding", f"unsupported content encoding "
                                                       f"{encoding.decode('latin-1')!r}; send the body uncompressed")


def check_declared_length(declared: Optional[str], max_bytes: int) -> None:
    """413 when a request's ``Content-Length`` already says its body is over `max_bytes`."""
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {max_bytes} bytes")


def check_read_length(size: int, max_bytes: int) -> None:
    """413 as soon as the bytes read so far are over `max_bytes` (a chunked or lying body)."""
    if size > max_bytes:
        raise BodyTooLarge(f"body is over the limit of {max_bytes} bytes")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it is known to be over `max_bytes`."""
    check_declared_length(request.headers.get("content-length"), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        check_read_length(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, what: str = "body") -> Any:
    """`raw` parsed as JSON; 400 ``bad_json`` when it does not parse or nests too deep to parse."""
    try:
        return fastjson.loads(raw)
    except RecursionError:
        raise InvalidInput("too_deep", f"{what} nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("bad_json", f"{what} is not valid JSON: {exc}") from None


#: curl's ``-d`` sends ``application/x-www-form-urlencoded`` unless told otherwise. Our
#: JSON endpoints read such a body as JSON (it still has to parse), so a pasted
#: ``curl -d '{"instances": ...}'`` works as it does with TF Serving or KServe.
_JSON_TYPES = {"application/json", "text/json", "application/x-www-form-urlencoded"}


def is_json(content_type: Optional[str]) -> bool:
    """Whether a Content-Type header (None = absent) is one our JSON endpoints read."""
    media = (content_type or _JSON).split(";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith("+json")


def require_json(content_type: Optional[str]) -> None:
    if not is_json(content_type):
        media = (content_type or "").split(";")[0].strip()
        raise UnsupportedMediaType("content_type", f"unsupported content type {media!r}; send application/json")


def error_response(exc: Rejected, headers: Optional[dict[str, str]] = None) -> Response:
    body = json.dumps(error_body(exc.message, exc.reason), separators=(",", ":")).encode()
    return Response(body, status_code=exc.status, media_type=_JSON, headers=headers)


def _http_reason(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed"}.get(status, "http")


#: Refusals that say nothing about the input stream's health (loading at start-up, a stray URL).
_NOT_INPUT_FAULTS = frozenset({"not_ready", "not_found", "method_not_allowed"})


class Edge:
    """The edge counters of one service and the one way it answers a refusal.

    ``vigil_events_received_total{type}`` and ``vigil_events_rejected_total{reason}``
    (DESIGN §4); `reasons` get series from the start so ``rate()`` sees the first
    rejection. `on_reject(status)` lets a service count refusals in its own metrics too
    (the logger's ``vigil_logger_requests_total{code}``).
    """

    def __init__(self, metrics: ServiceMetrics, component: str, kinds: Iterable[str] = (),
                 reasons: Iterable[str] = (), on_reject: Optional[Callable[[int], None]] = None):
        self.log = logging.getLogger(f"vigil.{component}")
        self.received = metrics.counter("vigil_events_received_total", "Events or requests received, by kind.",
                                        ("type",))
        self.rejected = metrics.counter("vigil_events_rejected_total", "Requests rejected at the edge, by reason.",
                                        ("reason",))
        self.m_received = {k: self.received.labels(type=k) for k in kinds}
        for reason in reasons:
            self.rejected.labels(reason=reason)
        self.counts = {"received": 0, "rejected": 0}
        self.max_body_bytes = max_body_bytes()
        self.on_reject = on_reject
        self.health = RecentHealth(component)  # recent rejections for /status (Degraded)
        self.auth = BearerAuth(token_from_env())  # the optional shared token (DESIGN §11)

    def check_auth(self, request: Request) -> None:
        """Raise `Unauthorized` when a token is configured and `request` does not carry it."""
        self.check_authorization(request.headers.get("authorization"))

    def check_authorization(self, header: Optional[str]) -> None:
        """Raise `Unauthorized` when a token is configured and the Authorization `header` is not it."""
        if not self.auth.allows(header):
            raise Unauthorized(UNAUTHORIZED, self.auth.MESSAGE)

    def accepted(self, skipped: Optional[tuple[str, str]] = None) -> None:
        """One input handled: it counts toward the service's recent health. `skipped`
        ``(reason, message)`` when most of its instances were skipped (a missing value …)."""
        if skipped is None:
            self.health.accepted()
        else:
            self.health.skipped(*skipped)

    def count_received(self, kind: str, n: int = 1) -> None:
        child = self.m_received.get(kind)
        if child is None:
            child = self.m_received[kind] = self.received.labels(type=kind)
        child.inc(n)
        self.counts["received"] += n

    def reject(self, exc: Rejected, headers: Optional[dict[str, str]] = None) -> Response:
        """Count `exc` and answer it."""
        self.rejected.labels(reason=exc.reason).inc()
        self.counts["rejected"] += 1
        if exc.reason not in _NOT_INPUT_FAULTS:
            self.health.rejected(exc.reason, exc.message)
        if self.on_reject is not None:
            self.on_reject(exc.status)
        return error_response(exc, headers)

    async def read(self, request: Request) -> bytes:
        """Header checks and the size-limited body of `request` (raises `Rejected`)."""
        check_headers(request.scope["headers"])
        return await read_body(request, self.max_body_bytes)

    async def read_json(self, request: Request, what: str = "body") -> Any:
        """Header checks, a JSON content type, and the body parsed (raises `Rejected`)."""
        check_headers(request.scope["headers"])
        require_json(request.headers.get("content-type"))
        raw = await read_body(request, self.max_body_bytes)
        if not raw.strip():
            raise InvalidInput("empty_body", f"{what} is empty; send a JSON body")
        return parse_json(raw, what)

    def install(self, app: FastAPI) -> None:
        """Answer every error of `app` as a counted ``{"error", "reason"}`` (see the module docstring)."""

        @app.exception_handler(Rejected)
        async def _rejected(request: Request, exc: Rejected):
            return self.reject(exc)

        @app.exception_handler(StarletteHTTPException)
        async def _http(request: Request, exc: StarletteHTTPException):
            return self.reject(Rejected(exc.status_code, _http_reason(exc.status_code),
                                        f"{request.method} {request.url.path}: {exc.detail}"))

        @app.exception_handler(RequestValidationError)
        async def _validation(request: Request, exc: RequestValidationError):
            first = (exc.errors() or [{}])[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return self.reject(InvalidInput("bad_request", f"{where}: {first.get('msg', 'invalid request')}"))

        @app.exception_handler(Exception)
        async def _internal(request: Request, exc: Exception):
            status = status_of(exc)
            if status >= 500:
                self.log.error("error serving %s %s", request.method, request.url.path, exc_info=exc)
            return self.reject(Rejected(status, "internal" if status >= 500 else "invalid",
                                        f"{'internal error: ' if status >= 500 else ''}{type(exc).__name__}: {exc}"))
