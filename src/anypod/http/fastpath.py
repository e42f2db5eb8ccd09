"""The hot routes, served without FastAPI's middleware stack and dependency solving.

Every route is still declared once, on its FastAPI router (which documents it in ``/docs`` and
would serve it too). This dispatcher compiles those same routes, matches a request's method
and path first, runs the router's guard (API key or worker token) and calls the route function
directly. Profiling showed FastAPI's layers costing about half of the server's CPU per job.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from anypod import errors
from anypod.http import errors as http_errors

Guard = Callable[[Request, str], Awaitable[None]]
Handler = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)\}")


@dataclasses.dataclass(frozen=True)
class FastRoute:
    pattern: re.Pattern[str]
    handler: Handler
    guard: Guard


def compile_path(path: str) -> re.Pattern[str]:
    """``/v2/{endpoint}/status/{job_id}`` → a regex with named groups, one path segment each."""
    parts = _PARAM.split(path)
    regex = "".join(
        f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def routes_of(router: APIRouter, guard: Guard) -> dict[str, list[FastRoute]]:
    table: dict[str, list[FastRoute]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute):
            fast = FastRoute(compile_path(route.path), route.endpoint, guard)
            for method in route.methods or ():
                table.setdefault(method, []).append(fast)
    return table


class FastPath:
    """ASGI app: hot routes directly, everything else (docs, lifespan) to the FastAPI app."""

    def __init__(self, app: FastAPI, tables: Sequence[dict[str, list[FastRoute]]]) -> None:
        self.app = app
        self.routes: dict[str, list[FastRoute]] = {}
        for table in tables:
            for method, found in table.items():
                self.routes.setdefault(method, []).extend(found)

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes.get(scope["method"], ()):
                match = route.pattern.match(scope["path"])
                if match:
                    scope["app"] = self.app
                    response = await self._serve(route, match.groupdict(), Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, route: FastRoute, params: dict[str, str], request: Request) -> Response:
        try:
            await route.guard(request, params["endpoint"])
            return await route.handler(request, **params)
        except errors.AnypodError as exc:
            return http_errors.render(exc, request.method, request.url.path)
        except Exception:
            return http_errors.unexpected(request.method, request.url.path)
