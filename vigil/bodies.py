"""Reading a request body with a size limit: the one edge check every Vigil service makes.

The declared Content-Length is refused before anything is read; a chunked body is read
only until it passes the limit, so an oversized request never lands in memory whole.
"""

from __future__ import annotations


class BodyTooLarge(ValueError):
    """The body is over the limit; `str(exc)` says by how much, for the 413 reply."""


async def read_limited(request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: curl's ``-d`` sends ``application/x-www-form-urlencoded`` unless told otherwise. Our
#: JSON endpoints read such a body as JSON (it still has to parse), so a pasted
#: ``curl -d '{"instances": ...}'`` works as it does with TF Serving or KServe.
_JSON_TYPES = {"application/json", "text/json", "application/x-www-form-urlencoded"}


def is_json(content_type) -> bool:
    """Whether a Content-Type header (None = absent) is one our JSON endpoints read."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith("+json")
