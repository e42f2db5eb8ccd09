"""The one table between anypod's exception tree and HTTP, read both ways.

The server answers a domain error with the status and code the table gives its class, in the
body ``{"error": message, "code": code, "field": field}`` (``field`` only when one input is to
blame). The SDK turns such a reply back into the same class: by ``code``, else (a server that
sends none, such as RunPod's) by status. What it raises is also an :class:`errors.ClientError`
(every error reply is one), so ``except errors.ClientError`` keeps catching them all.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from anypod import errors, types

TABLE: tuple[tuple[type[errors.AnypodError], int, str], ...] = (
    (errors.PayloadTooLarge, 413, "payload_too_large"),
    (errors.InvalidRequest, 400, "invalid_request"),
    (errors.Unauthorized, 401, "unauthorized"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.RateLimited, 429, "rate_limited"),
    (errors.EndpointNotFound, 404, "endpoint_not_found"),
    (errors.JobNotFound, 404, "job_not_found"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.StoreUnavailable, 503, "unavailable"),
    (errors.SchemaMismatch, 503, "schema_mismatch"),
)
INTERNAL = (500, "internal")
E = TypeVar("E", bound=errors.AnypodError)
_REPLIED: dict[type[errors.AnypodError], type[errors.AnypodError]] = {}
_BY_CLASS = {cls: (status, code) for cls, status, code in TABLE}
_BY_CODE = {code: cls for cls, _, code in TABLE}
_BY_STATUS: dict[int, type[errors.AnypodError]] = {  # a reply without a code: the widest class
    400: errors.InvalidRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    503: errors.StoreUnavailable,
}


def status_and_code(exc: errors.AnypodError) -> tuple[int, str]:
    for kind in type(exc).__mro__:
        if kind in _BY_CLASS:
            return _BY_CLASS[kind]
    return INTERNAL


def body(exc: errors.AnypodError) -> types.JSONDict:
    """The error reply body; the message names the field when one is to blame."""
    reply: types.JSONDict = {"error": exc.message, "code": status_and_code(exc)[1]}
    if isinstance(exc, errors.RateLimited):
        reply["limit"] = exc.limit
        reply["retry_after"] = exc.retry_after
    field = getattr(exc, "field", None)
    if field:
        reply["field"] = field
        if field not in exc.message:
            reply["error"] = f"{field}: {exc.message}"
    return reply


def from_reply(status: int, content: Any, where: str) -> errors.AnypodError:
    """The exception for an error reply (``content`` decoded, or text)."""
    message = content.get("error") if isinstance(content, dict) else None
    code = content.get("code") if isinstance(content, dict) else None
    text = f"{where} -> {status}: {message or content}"
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    cls = cls or _BY_STATUS.get(status)
    if cls is None:
        return errors.ClientError(text, status_code=status, body=content)
    exc: errors.AnypodError
    if issubclass(cls, errors.InvalidRequest):
        field = content.get("field") if isinstance(content, dict) else None
        exc = _replied(cls)(text, field=field if isinstance(field, str) else None)
    else:
        exc = _replied(cls)(text)
    exc.status_code, exc.body = status, content
    return exc


def _replied(cls: type[E]) -> type[E]:
    """``cls`` as the SDK raises it: also a :class:`errors.ClientError` (made once)."""
    if cls not in _REPLIED:
        namespace = {"__module__": errors.__name__, "__init__": cls.__init__}  # cls's signature
        _REPLIED[cls] = type(cls.__name__, (cls, errors.ClientError), namespace)
    return cast(type[E], _REPLIED[cls])
