"""Reading requests: bodies under a size limit, credentials, integer query parameters."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import Request

from anypod import errors, submission, types


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


async def json_object(request: Request, limit: int) -> types.JSONDict:
    return submission.decode_body(await read_body(request, limit))


async def raw_json(request: Request, limit: int) -> Any:
    """Worker posts: JSON whatever the Content-Type (the SDK sends x-www-form-urlencoded)."""
    body = await read_body(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"body is not valid JSON: {exc}", field="body") from exc


def credential(request: Request) -> str | None:
    """``Authorization: Bearer <key>`` or the bare key, as RunPod accepts both."""
    value = request.headers.get("authorization", "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or None


def caller(request: Request) -> str | None:
    """A stable, non-secret id for the caller's key, recorded as the job's owner."""
    key = credential(request)
    return f"key-{hashlib.sha256(key.encode()).hexdigest()[:16]}" if key else None


def int_param(request: Request, name: str, *, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidRequest(f"must be an integer, got {raw!r}", field=name) from None
    if value < minimum:
        raise errors.InvalidRequest(f"must be >= {minimum}, got {value}", field=name)
    return value
