"""Error replies: every one is JSON, with the status and code :mod:`anypod.protocols.errors`
gives the exception's class."""

from __future__ import annotations

import logging

from starlette.responses import Response

from anypod import errors
from anypod.http.responses import json_response
from anypod.protocols import errors as table

log = logging.getLogger(__name__)


def render(exc: errors.AnypodError, method: str, path: str) -> Response:
    status, _ = table.status_and_code(exc)
    if status >= 500 and not isinstance(exc, errors.StoreUnavailable):  # the store says once
        log.warning("%s %r -> %d: %s", method, path, status, exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    return json_response(table.body(exc), status_code=status, headers=headers)


def not_found(path: str) -> Response:
    return render(errors.NotFound("no such route"), "", path)


def wrong_method(method: str, allowed: tuple[str, ...]) -> Response:
    message = f"method {method} not allowed; use {', '.join(allowed)}"
    body = {"error": message, "code": "method_not_allowed"}
    return json_response(body, status_code=405, headers={"Allow": ", ".join(allowed)})


def internal() -> Response:
    body = {"error": "internal server error", "code": table.INTERNAL[1]}
    return json_response(body, status_code=500)
