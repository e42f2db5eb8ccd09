"""Request ids: every request has one, in its reply's ``X-Request-Id`` header, in every JSON
error body (``"request_id"``) and on every log line written while it is handled.

The server's connection (:mod:`anypod.http.protocol`) gives a request its id as soon as its
head is parsed: the client's own ``X-Request-Id`` when it is short and plain (at most
:data:`MAX_LENGTH` characters of letters, digits and ``-_.:/+=@``, so it is safe in a header,
a JSON body and a log line), else a new random one. It puts the id in the scope
(:data:`SCOPE_KEY`) and in the reply's headers, with no work per response. The app then makes
it the current id (:func:`adopt`, :data:`anypod.logs.request_id`). An app served by another
server (tests over httpx's ASGI transport) chooses the id itself and adds the header.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable

from starlette.types import Message, Scope, Send

from anypod import logs

SCOPE_KEY = "anypod.request_id"
HEADER = b"x-request-id"
MAX_LENGTH = 128
_ALLOWED = (string.ascii_letters + string.digits + "-_.:/+=@").encode()
_POOL = 1024
_pool: list[bytes] = []
os.register_at_fork(after_in_child=_pool.clear)  # a forked child draws its own


def new() -> bytes:
    """A fresh id: 16 hex digits, 64 bits from ``os.urandom`` (drawn 1,024 at a time: an id
    then costs a list pop)."""
    if not _pool:
        raw = os.urandom(8 * _POOL).hex().encode("ascii")
        _pool.extend(raw[i : i + 16] for i in range(0, 16 * _POOL, 16))
    return _pool.pop()


def acceptable(value: bytes) -> bool:
    """Whether a client's id may be used as is."""
    return 0 < len(value) <= MAX_LENGTH and not value.translate(None, _ALLOWED)


def choose(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request's id: its ``X-Request-Id`` (names lower-cased) if acceptable, else new."""
    for name, value in headers:
        if name == HEADER:
            return value if acceptable(value) else new()
    return new()


def adopt(scope: Scope, send: Send) -> Send:
    """Make the request's id current (for logs and error bodies) and return the ``send`` to
    answer with: ``send`` itself when the server gave the id (and sends its header), else one
    that adds the header."""
    given: str | None = scope.get(SCOPE_KEY)
    if given is not None:
        logs.request_id.set(given)
        return send
    chosen = choose(scope["headers"])
    scope[SCOPE_KEY] = text = chosen.decode("ascii")
    logs.request_id.set(text)
    return _adding_header(send, chosen)


def _adding_header(send: Send, value: bytes) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (HEADER, value)]}
        await send(message)

    return sending


def current() -> str:
    """The id of the request being handled (``-`` outside one)."""
    return logs.request_id.get()
