"""What the test modules share: the CloudEvent builder and the ready-service helpers.

- `cloud_event(data, type, **attributes)`: a binary-mode CloudEvents HTTP message (the
  ``cloudevents`` SDK's), with ``source``, a fresh ``id`` and a JSON content type unless
  given; ``.headers`` and ``.body`` are what to POST.
- `wait_ready(url)`: poll a service's readiness path until it answers 200.
- `serve_ready(app)`: a real uvicorn server (`tests.servers.serve_app`), an httpx client
  on it once ``/readyz`` is 200.

Imported as ``from tests.conftest import cloud_event``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings.http import HTTPMessage
from cloudevents.core.v1.event import CloudEvent

from tests.servers import serve_app, wait_until
from vigil.events import REQUEST


def cloud_event(data: Any, type: str = REQUEST, **attributes: Any) -> HTTPMessage:
    """One binary-mode CloudEvent as an HTTP message (``.headers``, ``.body``)."""
    attrs = {"type": type, "source": "/test", "id": str(uuid.uuid4()), "datacontenttype": "application/json",
             **attributes}
    return ce_http.to_binary_event(CloudEvent(attributes=attrs, data=data))


def wait_ready(url: str, path: str = "/readyz", timeout: float = 60.0) -> str:
    """Wait until ``GET url+path`` answers 200; return `url`."""
    wait_until(lambda: httpx.get(url + path).status_code == 200, timeout=timeout, what=f"{url}{path}")
    return url


@contextmanager
def serve_ready(app, timeout: float = 60.0, client_timeout: float = 30.0) -> Iterator[httpx.Client]:
    """Serve `app` on loopback; yield an httpx client on it once ``/readyz`` is 200."""
    with serve_app(app) as url:
        wait_ready(url, timeout=timeout)
        with httpx.Client(base_url=url, timeout=client_timeout) as client:
            yield client

