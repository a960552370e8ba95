"""The optional shared bearer token (DESIGN §11): one secret for every component of a monitor.

Every service reads it from ``VIGIL_TOKEN`` (`TOKEN_ENV`; the operator fills it from
``spec.security.tokenSecret``, `vigil up` from its own ``VIGIL_TOKEN`` or ``--token-file``).
When it is set, the endpoints that change what a monitor reports — the logger's
``/feedback``, the explainer's ``/explain`` and every detector's ``POST /`` — require
``Authorization: Bearer <token>``; the logger sends the same header to its sinks. The
inference path, ``/metrics``, ``/healthz``, ``/readyz`` and ``/status`` stay open.
Tokens are compared in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

TOKEN_ENV = "VIGIL_TOKEN"
UNAUTHORIZED = "unauthorized"


def token_from_env(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The configured token, or None when auth is off (unset or empty)."""
    token = (environ.get(TOKEN_ENV) or "").strip()
    return token or None


def read_token_file(path: str) -> str:
    """A token file's content (surrounding whitespace stripped); ValueError when empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def auth_header(token: Optional[str]) -> dict[str, str]:
    """The header a client (the logger's sinks) sends; empty when auth is off."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class BearerAuth:
    """Checks ``Authorization`` headers against one token (or lets everything through when None)."""

    def __init__(self, token: Optional[str]):
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, authorization: Optional[str]) -> bool:
        if self._token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._token)

    MESSAGE = "missing or wrong bearer token: send 'Authorization: Bearer <token>' (VIGIL_TOKEN)"
