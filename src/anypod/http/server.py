"""Serving the app with uvicorn, as a component the runtime starts and stops.

The HTTP parser's own errors (a request it cannot parse) are answered in JSON too, like every
other error. Signals are the runtime's: uvicorn installs no handlers of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from anypod import errors
from anypod.http.app import App

log = logging.getLogger(__name__)


class JsonErrorsProtocol(HttpToolsProtocol):
    """httptools' protocol, but a request it cannot parse gets a JSON 400."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps({"error": msg, "code": "invalid_request", "field": "request"})
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runtime handles SIGINT and SIGTERM


class HttpServer:
    """The API on ``host:port`` (port 0: any free one; :attr:`port` says which)."""

    name = "http"

    def __init__(
        self, app: App, *, host: str, port: int, log_level: str, before_stop: Callable[[], None]
    ) -> None:
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=JsonErrorsProtocol,
            ws="none",  # no websocket routes: an upgrade request is plain HTTP
            lifespan="off",
            access_log=False,
            log_level=log_level.lower(),
            timeout_keep_alive=75,
            timeout_graceful_shutdown=2,
            proxy_headers=False,
        )
        self.before_stop = before_stop
        self._server = _Uvicorn(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="anypod-http")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if not self._server.started:
            with contextlib.suppress(Exception, SystemExit):  # uvicorn exits when it cannot bind
                await self._task
            where = f"{self.config.host}:{self.config.port}"
            raise errors.ConfigError(f"cannot listen on {where} (in use, or not an address here)")

    async def stop(self) -> None:
        """Release held long-polls (``before_stop``), then let in-flight requests finish."""
        self.before_stop()
        self._server.should_exit = True
        if self._task is not None:
            await self._task
