"""What a route is, and finding the route of a request.

A :class:`Route` says everything about one operation: method and path, who may call it
(:class:`Auth`), how its query and body are validated (pydantic models), how big a body may be,
and every status it answers with which reply model. The route table (``http/routes.py``) is a
list of them; the app dispatches with it and ``/openapi.json`` is generated from it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import compile_path

if TYPE_CHECKING:
    from anypod.http.context import Context

Handler = Callable[["Context"], Awaitable[Response]]


class Auth(enum.Enum):
    NONE = "none"  #: open: load balancer health, docs
    CLIENT = "client"  #: an API key, when keys are configured
    WORKER = "worker"  #: the endpoint's worker token


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Largest request bodies, in bytes, by the name routes give them."""

    run: int = 10 * 1024 * 1024
    runsync: int = 20 * 1024 * 1024
    report: int = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class Route:
    method: str
    path: str  # with {name} parameters, one path segment each
    handler: Handler
    auth: Auth
    summary: str
    tag: str
    responses: Mapping[int, type[BaseModel] | None]  # None: no body (204) or not JSON
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_limit: str = "run"  # a field of Limits
    operation_id: str | None = None
    in_schema: bool = True

    @property
    def name(self) -> str:
        return self.operation_id or self.handler.__name__

    def __post_init__(self) -> None:
        if self.body is not None and self.body_limit not in Limits.__dataclass_fields__:
            raise ValueError(f"{self.path}: unknown body limit {self.body_limit!r}")


@dataclasses.dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclasses.dataclass(frozen=True)
class WrongMethod:
    allowed: tuple[str, ...]


class Router:
    """Matches a method and path against the table, in table order."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._compiled: list[tuple[re.Pattern[str], Route]] = [
            (compile_path(r.path)[0], r) for r in self.routes
        ]
        self._by_method: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for pattern, route in self._compiled:
            self._by_method.setdefault(route.method, []).append((pattern, route))
        self._check_unique()

    def _check_unique(self) -> None:
        seen = {(r.method, r.path) for r in self.routes}
        if len(seen) != len(self.routes):
            raise ValueError("a method and path are declared twice in the route table")

    def match(self, method: str, path: str) -> Match | WrongMethod | None:
        """The route and its path parameters. HEAD is served by an open GET route (health,
        docs): those change nothing, while a GET on the API may (a take, a stream drain)."""
        head = method == "HEAD"
        for pattern, route in self._by_method.get("GET" if head else method, ()):
            found = pattern.match(path)
            if found and (not head or route.auth is Auth.NONE):
                return Match(route, found.groupdict())
        allowed = sorted({r.method for p, r in self._compiled if p.match(path)})
        return WrongMethod(tuple(allowed)) if allowed else None
