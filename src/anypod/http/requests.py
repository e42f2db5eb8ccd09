"""Reading a request: a body under a size limit, and validating query and body against the
route's pydantic models, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from anypod import errors

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(
        f"request body of {size} bytes exceeds the limit of {limit} bytes", field="body"
    )


def body(model: type[M], raw: bytes) -> M:
    """A JSON body, whatever its Content-Type (the runpod SDK's worker posts say form data).

    Decoded by orjson, as anypod always has: strict JSON (no NaN, Infinity or lone surrogates),
    integers beyond 64 bits read as floats."""
    if not raw.strip():
        raise errors.InvalidRequest("request body is empty; expected JSON", field="body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(
            f"request body is not valid JSON: {exc}", field="body"
        ) from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


def path(params: Mapping[str, str]) -> None:
    """Path parameters are ids kept in text columns: no NUL (PostgreSQL cannot store one)."""
    _no_nul(params)


def _no_nul(values: Mapping[str, str]) -> None:
    for name, value in values.items():
        if "\x00" in value:
            raise errors.InvalidRequest("must not contain a NUL character", field=name)


def query(model: type[M], params: Mapping[str, str]) -> M:
    """Query parameters; an empty value (``?wait=``) counts as absent."""
    _no_nul(params)
    try:
        return model.model_validate({k: v for k, v in params.items() if v != ""})
    except ValidationError as exc:
        raise invalid(exc, "query") from None


def invalid(exc: ValidationError, where: str) -> errors.InvalidRequest:
    """The first problem pydantic found, naming the field (``policy.ttl``, ``wait``)."""
    first = exc.errors(include_url=False)[0]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    field = field.removeprefix(".")
    kind, message = first["type"], first["msg"]
    if kind == "json_invalid":
        return errors.InvalidRequest(f"request body is not valid JSON: {message}", field="body")
    if not field:
        return errors.InvalidRequest(f"request {where} is invalid: {message}", field=where)
    return errors.InvalidRequest(message, field=field)
