"""One base for every deliberate Vigil error, and the one table from error type to HTTP status.

`VigilError` is the base of every error Vigil raises on purpose (an invalid spec, a bad
artifact, a request an edge refuses, …); anything else that reaches an HTTP edge is a bug
and answers 500. `Rejected(status, reason, message)` is a request an edge refuses: the
HTTP status, a short `reason` (a bounded metric label) and a message naming what is
wrong. In the style of KServe's `kserve.errors` (InvalidInput → 400, ModelNotFound → 404,
ServerNotReady → 503 …), the subclasses below fix the status of each kind of refusal
through `STATUS`, the one table; `status_of` answers for any exception.

This module imports nothing, so the planner and the operator can use it.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base class of every error Vigil raises on purpose."""


class Rejected(VigilError):
    """A request an edge refuses; `vigil.edge` answers ``{"error": message, "reason": reason}``."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Fixed(Rejected):
    """A rejection whose status comes from `STATUS` by its type."""

    def __init__(self, reason: str, message: str):
        super().__init__(status_of_type(type(self)), reason, message)


class InvalidInput(_Fixed):
    """The body or a header cannot be used (not JSON, wrong shape, non-numeric …)."""


class Unauthorized(_Fixed):
    """A required bearer token is missing or wrong."""


class NotFound(_Fixed):
    """No such route or model."""


class PayloadTooLarge(_Fixed):
    """The body is over the edge's size limit."""


class UnsupportedMediaType(_Fixed):
    """A content type or content encoding the edge does not read."""


class HeadersTooLarge(_Fixed):
    """The request's header block is over the edge's limit."""


class Unprocessable(_Fixed):
    """Well-formed input the model could not score."""


class UpstreamError(_Fixed):
    """The service this edge calls did not answer usably."""


class NotReady(_Fixed):
    """The service is up but cannot take work yet (artifact loading, busy)."""


class UpstreamTimeout(_Fixed):
    """The service this edge calls did not answer in time."""


#: Error type -> HTTP status. Subclasses inherit their base's row (`status_of` walks the MRO).
STATUS: dict[type, int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    NotFound: 404,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unprocessable: 422,
    HeadersTooLarge: 431,
    UpstreamError: 502,
    NotReady: 503,
    UpstreamTimeout: 504,
}


def status_of_type(exc_type: type) -> int:
    for klass in exc_type.__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 500


def status_of(exc: BaseException) -> int:
    """The HTTP status an edge answers for `exc` (500 for anything not deliberate)."""
    if isinstance(exc, Rejected):
        return exc.status
    return status_of_type(type(exc))


def error_body(message: str, reason: str) -> dict[str, str]:
    """The one JSON error body every Vigil edge answers (DESIGN §3)."""
    return {"error": message, "reason": reason}
