"""Error replies: every one is JSON, with the status and code :mod:`anypod.protocols.errors`
gives the exception's class, and the id of the request (``request_id``,
:mod:`anypod.http.request_ids`) to find its log lines by."""

from __future__ import annotations

import logging

from starlette.responses import Response

from anypod import errors, logs
from anypod.http import request_ids
from anypod.http.responses import json_response
from anypod.protocols import errors as table

log = logging.getLogger(__name__)


def render(exc: errors.AnypodError, method: str, path: str) -> Response:
    status, _ = table.status_and_code(exc)
    if status >= 500 and not isinstance(exc, errors.StoreUnavailable):  # the store says once
        log.warning("%s %r -> %d: %s", method, path, status, exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    if isinstance(exc, errors.RateLimited):
        headers = exc.headers
    body = table.body(exc)
    body["request_id"] = request_ids.current()
    return json_response(body, status_code=status, headers=headers)


def not_found(path: str) -> Response:
    return render(errors.NotFound("no such route"), "", path)


def wrong_method(method: str, allowed: tuple[str, ...]) -> Response:
    message = f"method {method} not allowed; use {', '.join(allowed)}"
    body = {"error": message, "code": "method_not_allowed", "request_id": request_ids.current()}
    return json_response(body, status_code=405, headers={"Allow": ", ".join(allowed)})


def internal() -> Response:
    body = {
        "error": "internal server error",
        "code": table.INTERNAL[1],
        "request_id": request_ids.current(),
    }
    return json_response(body, status_code=500)


_refused = logs.Occasional("refused %d request(s) that would hold: too many connections open")


def busy() -> Response:
    """503 to a request that would hold its connection while the server is crowded
    (:mod:`anypod.http.capacity`); the connection is closed after it."""
    _refused.note()
    body = {
        "error": "server busy: too many connections open; retry",
        "code": "busy",
        "request_id": request_ids.current(),
    }
    headers = {"Retry-After": "1", "Connection": "close"}  # and free the connection
    return json_response(body, status_code=503, headers=headers)
