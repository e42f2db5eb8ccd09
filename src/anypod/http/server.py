"""Serving the app with uvicorn, as a component the runtime starts and stops.

Each connection is an :class:`~anypod.http.protocol.AnypodProtocol` (JSON for the parser's own
errors, request ids, deadlines on slow clients, a cap on open connections), allowing what its
:class:`~anypod.http.protocol.Policy` says. Signals are the runtime's: uvicorn installs no
handlers of its own; nor logging: its lines go through the process's (:mod:`anypod.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import uvicorn

from anypod import errors
from anypod.http.app import App
from anypod.http.protocol import AnypodProtocol, Policy, quiet_parser_errors

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runtime handles SIGINT and SIGTERM


class HttpServer:
    """The API on ``host:port`` (port 0: any free one; :attr:`port` says which)."""

    name = "http"

    def __init__(
        self,
        app: App,
        *,
        host: str,
        port: int,
        log_level: str,
        before_stop: Callable[[], None],
        policy: Policy | None = None,
    ) -> None:
        self.policy = policy or Policy()
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=AnypodProtocol.with_policy(self.policy),
            ws="none",  # no websocket routes: an upgrade request is plain HTTP
            lifespan="off",
            access_log=False,
            log_config=None,  # uvicorn's lines go through the process's handler and format
            log_level=log_level.lower(),
            timeout_keep_alive=75,
            timeout_graceful_shutdown=2,
            proxy_headers=False,
            server_header=False,  # no "server: uvicorn" banner (and one header less to write)
        )
        quiet_parser_errors()
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
