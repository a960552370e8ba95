"""``GET /history?limit=N``: a detector's `History` over HTTP (kept apart so `history` imports no FastAPI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vigil.errors import InvalidInput, Rejected
from vigil_detectors.frame.history import MAX_TAIL, History


def history_router(get: Callable[[], Optional[History]]):
    """A FastAPI router serving ``GET /history?limit=N`` -> ``{"checks": [...]}`` (newest last) from `get()`.

    Open like ``/status`` (no token). `limit` defaults to 100 and must be 1..`MAX_TAIL` (else a counted 400). A detector
    without a state dir has no history file: the answer is then ``{"checks": [], "persisted": false}``.
    """
    router = APIRouter()

    @router.get("/history")
    async def history(request: Request) -> JSONResponse:
        edge = request.app.state.edge
        raw = request.query_params.get("limit", "100")
        try:
            try:
                limit = int(raw)
            except ValueError:
                raise InvalidInput("bad_request", f"limit must be an integer, got {raw!r}") from None
            if not 1 <= limit <= MAX_TAIL:
                raise InvalidInput("bad_request", f"limit must be between 1 and {MAX_TAIL}, got {limit}")
        except Rejected as exc:
            return edge.reject(exc)
        store = get()
        if store is None:
            return JSONResponse({"checks": [], "persisted": False})
        return JSONResponse({"checks": store.tail(limit), "persisted": True})

    return router
