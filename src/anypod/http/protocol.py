"""One HTTP/1.1 connection: uvicorn's httptools protocol, with what anypod adds to it.

- What the connection answers itself is JSON, like every other error: a request it cannot parse
  (400), one whose head or body comes too slowly (408), a connection past the cap (503). Each
  carries a request id, as every reply does.
- Every request gets its id (:mod:`anypod.http.request_ids`) as its head is parsed: in the scope
  for the app, and in the reply's headers at no cost per response.
- Deadlines on the client, never on the server. A request's head must arrive within
  ``head_timeout`` seconds (from the connection's start, or the request's first byte); its body,
  once begun, on average no slower than ``body_min_rate`` bytes a second after ``body_grace``
  seconds. Once a request is in, it is the server's to answer however long it holds (job-take,
  runsync, status-sync): no deadline runs then; nor while the server has stopped reading (the
  app has not yet taken 64 KiB that came, a pipelined request waits its turn) or the client
  waits for its ``100 Continue``: the clock restarts. Past a connection's first request, timers
  are armed only when a head or body spans more than one read: the usual request costs none.
- A cap on open connections (:mod:`anypod.http.capacity`): past ``max_connections`` a new
  connection is answered 503 and closed; from ``crowded_at`` on, its requests are marked so that
  the app refuses those that would hold the connection while they wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from anypod import logs
from anypod.http import capacity, request_ids

UNLIMITED = 1 << 62


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """What a connection allows its client (see the module's docstring)."""

    head_timeout: float = 10.0
    body_grace: float = 10.0
    body_min_rate: float = 10_000.0  # bytes a second
    max_connections: int = UNLIMITED
    crowded_at: int = UNLIMITED


_slow = logs.Occasional("closed %d connection(s) whose request came too slowly")
_over = logs.Occasional("refused %d connection(s) past the cap on open connections")


_HEAD, _BODY = 1, 2  # what a connection waits on the client for (0: nothing)


class AnypodProtocol(HttpToolsProtocol):
    """All it adds is done after each read (:meth:`data_received`), from what uvicorn's state
    says is pending: one Python call per read, none per parser callback."""

    policy: ClassVar[Policy] = Policy()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._identified: object = None  # the last request given its id
        self._waiting = 0  # what the timer is for: _HEAD, _BODY, 0 (no timer)
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0  # when the body clock started
        self._bytes = 0  # what came since

    @classmethod
    def with_policy(cls, policy: Policy) -> type[AnypodProtocol]:
        """This protocol, allowing what ``policy`` says (uvicorn takes a class)."""
        return type("AnypodProtocol", (cls,), {"policy": policy})

    # --- the connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.policy.max_connections:
            _over.note()
            busy = "server busy: too many connections open; retry"
            self._answer(503, busy, (b"retry-after", b"1"))
            return
        self._wait_for(_HEAD)  # a new connection owes its first request's head

    def connection_lost(self, exc: Exception | None) -> None:
        self._wait_for(0)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._bytes += len(data)
        HttpToolsProtocol.data_received(self, data)
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not self._identified:
            self._identify()
        if (
            cycle is not None
            and not (self._waiting or cycle.more_body)
            and cycle.scope is self.scope
        ):
            return  # the usual read: a whole request in, nothing awaited
        pending = self._pending()
        if pending != self._waiting:
            self._wait_for(pending)

    def send_400_response(self, msg: str) -> None:
        self._answer(400, msg, field="request")

    def _identify(self) -> None:
        """The new request's id in its scope and its reply's headers; the crowd mark. (Of
        requests pipelined in one read, the app names those before the last itself.)"""
        cycle = self.cycle
        self._identified = cycle
        if self._timer is not None:
            self._wait_for(0)  # a new request: what was awaited is in
        chosen = request_ids.choose(self.headers)
        scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
        scope[request_ids.SCOPE_KEY] = chosen.decode("ascii")
        cycle.default_headers = [*cycle.default_headers, (request_ids.HEADER, chosen)]
        if len(self.connections) >= self.policy.crowded_at:
            scope[capacity.CROWDED] = True

    def _pending(self) -> int:
        """What the connection waits on the client for: a request's head, begun but not all in
        (uvicorn sets the method once it is); its body, not all in; or nothing. A body whose
        request was answered before it was read counts as pending (uvicorn drops the rest)."""
        scope: dict[str, Any] | None = self.scope  # type: ignore[assignment]
        if scope is None:  # nothing parsed yet: still the first head
            return self._waiting
        if "method" not in scope:
            return _HEAD
        cycle = self.cycle
        if cycle is not None and cycle.more_body and cycle.scope is scope:
            return _BODY
        return 0

    # --- deadlines ----------------------------------------------------------------------------

    def _wait_for(self, what: int) -> None:
        """Stop the clock, and start it for ``what`` (unless 0, or the connection is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting = what
        if what == 0 or self.transport is None or self.transport.is_closing():
            return
        if what == _HEAD:
            self._timer = self.loop.call_later(self.policy.head_timeout, self._head_late)
        else:
            self._since, self._bytes = self.loop.time(), 0
            self._timer = self.loop.call_later(self.policy.body_grace, self._body_check)

    def _head_late(self) -> None:
        self._timer = None
        if self.flow.read_paused:  # the server's wait (a pipelined request), not the client's
            self._wait_for(_HEAD)
            return
        self._give_up(f"request head not received within {self.policy.head_timeout:g} s")

    def _body_check(self) -> None:
        self._timer = None
        policy, now = self.policy, self.loop.time()
        if self.flow.read_paused or self._awaits_continue():  # the server's turn: start again
            self._wait_for(_BODY)
            return
        due = self._since + policy.body_grace + self._bytes / policy.body_min_rate
        if now < due:
            self._timer = self.loop.call_later(due - now, self._body_check)
            return
        self._give_up(f"request body came slower than {policy.body_min_rate:g} bytes a second")

    def _awaits_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits for the app to read the body."""
        return self.cycle is not None and self.cycle.waiting_for_100_continue

    def _give_up(self, reason: str) -> None:
        """Close the connection; with a 408 when a request has begun and no reply is due on
        the connection (nor half sent). A connection that never sent a byte is closed as an idle
        one is: a client that sends just then sees a closed connection (and retries), not a 408
        for a request the server never saw."""
        _slow.note()
        cycle, body = self.cycle, self._waiting == _BODY
        if self.pipeline or self.scope is None:  # (no request begun: nothing to answer)
            self.transport.close()
        elif not body and (cycle is None or cycle.response_complete):
            self._answer(408, reason)
        elif body and cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the app reads a disconnect, and its reply goes nowhere
            cycle.message_event.set()
            scope = cast(dict[str, Any], self.scope)
            self._answer(408, reason, request_id=scope.get(request_ids.SCOPE_KEY))
        else:
            self.transport.close()

    # --- replies of the connection's own ------------------------------------------------------

    def _answer(
        self,
        status: int,
        message: str,
        *headers: tuple[bytes, bytes],
        field: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Write a JSON error reply and close the connection."""
        rid = request_id.encode() if request_id else request_ids.choose(self.headers or ())
        self.transport.write(_reply(status, message, field, rid, self._default_headers(headers)))
        self.transport.close()

    def _default_headers(self, extra: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [*self.server_state.default_headers, *extra]


class _ParserErrors(logging.Filter):
    """uvicorn logs each request it cannot parse; a flood of them is a line now and then."""

    MESSAGE = "Invalid HTTP request received."

    def __init__(self) -> None:
        super().__init__()
        self.tally = logs.Occasional("answered %d request(s) that could not be parsed with a 400")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE:
            return True
        self.tally.note()
        return False


def quiet_parser_errors() -> None:
    """Count uvicorn's line per unparsable request instead of writing each (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ParserErrors) for f in logger.filters):
        logger.addFilter(_ParserErrors())


_CODES = {400: "invalid_request", 408: "request_timeout", 503: "busy"}


def _reply(
    status: int,
    message: str,
    field: str | None,
    request_id: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> bytes:
    body: dict[str, Any] = {"error": message, "code": _CODES[status]}
    if field:
        body["field"] = field
    body["request_id"] = request_id.decode("ascii")
    payload = orjson.dumps(body)
    content = [STATUS_LINE[status]]
    for name, value in (*headers, (request_ids.HEADER, request_id)):
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(payload),
        b"connection: close\r\n\r\n",
        payload,
    ]
    return b"".join(content)
