"""How the SDK puts a request on the wire: the one seam between the client and HTTP.

:class:`BaseClient` turns every operation into a :class:`Call` and reads every :class:`Reply`;
a sender only moves bytes. httpx is the default (sync and async, and ``httpx.ASGITransport``
for in-process tests); aiohttp serves the worker's hot path, where it costs about a quarter of
httpx's CPU per request. Each sender maps its library's failures to :class:`errors.Unreachable`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import httpx

from anypod import errors


@dataclasses.dataclass(frozen=True)
class Call:
    """One HTTP exchange: what to send and how long the server may hold it."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    body: bytes | None = None
    hold: float = 0.0

    @property
    def timeout(self) -> float:
        return self.hold + 10.0


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    call: Call


class AsyncSender(Protocol):
    async def send(self, call: Call) -> Reply: ...

    async def aclose(self) -> None: ...


def _unreachable(call: Call, exc: BaseException) -> errors.Unreachable:
    return errors.Unreachable(f"{call.method} {call.path}: {type(exc).__name__}: {exc}")


def _httpx_options(call: Call) -> dict[str, Any]:
    """What httpx's sync and async ``request`` both need besides method and path."""
    return {
        "params": call.params,
        "content": call.body,
        "timeout": httpx.Timeout(10.0, read=call.timeout),
    }


class HttpxSender:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=64),
        )

    async def send(self, call: Call) -> Reply:
        try:
            reply = await self._http.request(call.method, call.path, **_httpx_options(call))
        except httpx.TransportError as exc:
            raise _unreachable(call, exc) from exc
        return Reply(reply.status_code, reply.content, call)

    async def aclose(self) -> None:
        await self._http.aclose()


class SyncHttpxSender:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, headers=dict(headers), transport=transport)

    def send(self, call: Call) -> Reply:
        try:
            reply = self._http.request(call.method, call.path, **_httpx_options(call))
        except httpx.TransportError as exc:
            raise _unreachable(call, exc) from exc
        return Reply(reply.status_code, reply.content, call)

    def close(self) -> None:
        self._http.close()


class AiohttpSender:
    """One aiohttp session, opened on first use inside the running loop."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        self._base = base_url
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, call: Call) -> Reply:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=64),
                skip_auto_headers=("User-Agent",),
            )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=call.timeout)
        params = {k: str(v) for k, v in (call.params or {}).items()}
        try:
            async with self._session.request(
                call.method, self._base + call.path, params=params, data=call.body, timeout=timeout
            ) as reply:
                return Reply(reply.status, await reply.read(), call)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _unreachable(call, exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
