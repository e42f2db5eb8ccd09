"""One table from domain errors to HTTP status codes; every error reply is JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from anypod import errors
from anypod.http.responses import json_response

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[errors.AnypodError], int] = {
    errors.PayloadTooLarge: 413,
    errors.InvalidRequest: 400,
    errors.Unauthorized: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.StoreUnavailable: 503,
    errors.SchemaMismatch: 503,
}


def status_for(exc: errors.AnypodError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500


def error_body(exc: errors.AnypodError) -> dict[str, object]:
    body: dict[str, object] = {"error": exc.message}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
        if field not in exc.message:
            body["error"] = f"{field}: {exc.message}"
    return body


def render(exc: errors.AnypodError, method: str, path: str) -> Response:
    """The JSON reply for a domain error."""
    code = status_for(exc)
    if code >= 500:
        log.warning("%s %s -> %d: %s", method, path, code, exc)
    headers = {"Retry-After": "1"} if code == 503 else None
    return json_response(error_body(exc), status_code=code, headers=headers)


def unexpected(method: str, path: str) -> Response:
    log.exception("unhandled error on %s %s", method, path)
    return json_response({"error": "internal server error"}, status_code=500)


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.AnypodError)
    return render(exc, request.method, request.url.path)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, status_code=exc.status_code)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    message = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
    return json_response({"error": message, "field": field or None}, status_code=400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected(request.method, request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.AnypodError, _domain)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
