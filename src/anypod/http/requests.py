"""Reading a request: a body under a size limit, and validating query and body against the
route's pydantic models, with errors that name the field."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from anypod import errors
from anypod.http.routing import Limits

M = TypeVar("M", bound=BaseModel)
DEFAULT_LIMITS = Limits()


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


def body(model: type[M], raw: bytes, limits: Limits = DEFAULT_LIMITS) -> M:
    """A JSON body, whatever its Content-Type (the runpod SDK's worker posts say form data).

    Decoded by orjson, as anypod always has: strict JSON (no NaN, Infinity or lone surrogates).
    Refused before decoding when it holds more values and keys than ``limits.json_values``
    (413: what it would cost in memory); after, when it nests deeper than
    ``limits.json_depth`` or holds an integer beyond 64 bits, which orjson would read as a
    float (400 naming the top-level field)."""
    if not raw or raw.isspace():
        raise errors.InvalidRequest("request body is empty; expected JSON", field="body")
    marks = raw.translate(None, _NOT_MARKS)  # commas, colons, opening brackets (strings' too)
    opened = marks.count(b"{") + marks.count(b"[")
    _count_values(raw, len(marks), limits.json_values)
    digits = raw.translate(_DIGITS)  # C speed; orjson would round such integers
    big = _LONG_DIGITS in digits or _LONG_NEGATIVE in digits
    value = _decode(raw)
    if opened > limits.json_depth and _deeper_than(raw, limits.json_depth):
        _check_shape(value, limits.json_depth)
    if big:  # the rare body with 19 digits in a row: read again, with exact integers
        value = None
        exact = _ExactInts()
        value = json.loads(raw, parse_int=exact)
        if exact.too_big:
            _check_shape(value, limits.json_depth)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


_NOT_MARKS = bytes(sorted(set(range(256)) - set(b",:{[")))
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 20  # 20 digits or more: maybe beyond 2**64 - 1 (a float, to orjson)
_LONG_NEGATIVE = b"-" + b"0" * 19  # below -2**63


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(
            f"request body is not valid JSON: {exc}", field="body"
        ) from None


def _count_values(raw: bytes, marks: int, limit: int) -> None:
    """413 when the body holds more than ``limit`` JSON values and keys. The values of a
    container are one more than the commas between them and each key is followed by a colon,
    so commas, colons and containers plus one (``marks + 1``) are at least as many; only when
    that is over the limit are they counted again outside strings (text has commas too)."""
    if marks + 1 <= limit:
        return
    text = _unescaped(raw)
    if text.count(b'"') <= 2 * limit:  # each string is a value or a key
        found = sum(len(o.translate(None, _NOT_MARKS)) for o in _unquoted(text))
        if found + 1 <= limit:
            return
    raise errors.PayloadTooLarge(
        f"request body holds more than {limit} JSON values and keys (each object, list,"
        " number, string); send large arrays as one string (base64, say) or a URL",
        field="body",
    )


def _deeper_than(raw: bytes, depth: int) -> bool:
    """Whether the body nests deeper than ``depth`` levels, at C speed with no tree walked: of
    its brackets outside strings, each pass takes out the innermost pairs, one level."""
    brackets = b"".join(o.translate(_SQUARE, _NOT_BRACKETS) for o in _unquoted(_unescaped(raw)))
    for _ in range(depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"{}[]")))


def _unescaped(raw: bytes) -> bytes:
    """The body without escaped backslashes and quotes: every quote left opens or closes a
    string. (The same bytes, uncopied, when it has none.)"""
    return raw.replace(b"\\\\", b"").replace(b'\\"', b"")


def _unquoted(text: bytes) -> Iterator[bytes]:
    """What is outside strings in ``text`` (see :func:`_unescaped`), a window at a time, at C
    speed in bounded memory: split a window on quotes, and every other part is outside."""
    inside = False
    for start in range(0, len(text), _WINDOW):
        parts = text[start : start + _WINDOW].split(b'"')
        yield b"".join(parts[inside::2])
        inside ^= len(parts) % 2 == 0


_WINDOW = 1 << 18


class _BigInt(int):
    """An integer beyond 64 bits, as the stdlib decoder read it (orjson would round it)."""


class _ExactInts:
    """``parse_int`` for the stdlib decoder: what does not fit in 64 bits is a :class:`_BigInt`."""

    too_big = False

    def __call__(self, text: str) -> int:
        n = int(text)
        if -(2**63) <= n < 2**64:
            return n
        self.too_big = True
        return _BigInt(n)


def _check_shape(value: Any, depth: int) -> None:
    """400 naming the top-level member that nests deeper than ``depth`` levels (the body being
    the first) or holds an integer beyond 64 bits."""
    if isinstance(value, dict):
        members: Iterable[tuple[str, Any]] = value.items()
    elif isinstance(value, list):
        members = ((f"[{i}]", item) for i, item in enumerate(value))
    else:
        return
    for name, member in members:
        problem = _problem(member, depth)
        if problem:
            raise errors.InvalidRequest(problem, field=name)


def _problem(member: Any, depth: int) -> str | None:
    stack = [(member, 2)]  # the body is level 1
    while stack:
        node, level = stack.pop()
        if isinstance(node, _BigInt):
            return "integer beyond 64 bits (it would lose precision); send it as a string"
        if not isinstance(node, (dict, list)):
            continue
        if level > depth:
            return f"JSON nested more than {depth} levels deep"
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, _WALKED))
    return None


_WALKED = (dict, list, _BigInt)


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
