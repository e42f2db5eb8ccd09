"""Reading a request: a body under a size limit, and validating query and body against the
route's pydantic models, with errors that name the field."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import parse_qsl

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


def path(params: Mapping[str, str], raw_path: str) -> None:
    """Path parameters are ids kept in text columns: no NUL (PostgreSQL cannot store one)."""
    if "\x00" in raw_path:
        _no_nul(params)


def _no_nul(values: Mapping[str, str]) -> None:
    for name, value in values.items():
        if "\x00" in value:
            raise errors.InvalidRequest("must not contain a NUL character", field=name)


def query(model: type[M], raw: bytes) -> M:
    """Query parameters (the last of repeated ones); an empty value (``?wait=``) counts as
    absent. No NUL in them."""
    if not raw:
        defaults: M = _defaults(model)
        return defaults
    try:
        return model.model_validate(_pairs(raw.decode("latin-1")))
    except ValidationError as exc:
        raise invalid(exc, "query") from None


def _pairs(text: str) -> dict[str, str]:
    """``a=1&b=x%20y&c=`` → ``{"a": "1", "b": "x y"}``: the last of repeated names wins, an
    empty value is left out. ``parse_qsl`` only when there is something to unquote (the common
    case has nothing, and only an escape can make a NUL, which is refused)."""
    if "%" not in text and "+" not in text:
        pairs = (item.partition("=") for item in text.split("&"))
        return {name: value for name, _, value in pairs if value}
    params = {k: v for k, v in parse_qsl(text, keep_blank_values=True) if v}
    _no_nul(params)
    return params


@functools.cache
def _defaults(model: type[M]) -> M:
    """A model of every default (most requests have no query string): made once, never changed."""
    return model.model_validate({})


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
