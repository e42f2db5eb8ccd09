"""What a route is, and finding the route of a request.

A :class:`Route` says everything about one operation: method and path, who may call it
(:class:`Auth`), how its query and body are validated (pydantic models), how big a body may be,
and every status it answers with which reply model. The route table (``http/routes.py``) is a
list of them; the app dispatches with it and ``/openapi.json`` is generated from it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.responses import Response

from anypod.keys import Scope

if TYPE_CHECKING:
    from anypod.http.context import Context

Handler = Callable[["Context"], Awaitable[Response]]


class Auth(enum.Enum):
    NONE = "none"  #: open: load balancer health, docs
    CLIENT = "client"  #: an API key, when keys are configured
    WORKER = "worker"  #: the endpoint's worker token


BODY_LIMITS = ("run", "runsync", "report")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Largest request bodies, in bytes, by the name routes give them (:data:`BODY_LIMITS`);
    and the shape of the JSON in any body.

    ``json_values`` bounds what a body costs once decoded: Python spends 30-70 bytes on a value
    that JSON writes in 2-3 (``{}``, ``1,``), so 10 MB of them took 200+ MB; at most 262,144
    values and keys is ~25 MB however they are shaped (beyond the size of the strings), and
    still room for a list of 250k numbers. Larger arrays belong in a string (base64) or a URL.
    ``json_depth``: orjson decodes 1,024 levels but encodes only 254, and stored JSON is
    embedded again (a worker's job, its output, a batch, a webhook): 128 leaves that room.
    ``report_json_values``: a worker's result (256 embeddings of 1,024 floats: 263k values) comes
    from a holder of the endpoint's token, and a refused result fails its job; 1M values keep
    one such body under ~70 MB decoded (the memory test's bound holds)."""

    run: int = 10 * 1024 * 1024
    runsync: int = 20 * 1024 * 1024
    report: int = 64 * 1024 * 1024
    json_values: int = 262_144
    report_json_values: int = 1024 * 1024
    json_depth: int = 128

    def for_body(self, name: str) -> Limits:
        """The limits a body of ``name`` (:data:`BODY_LIMITS`) is read under."""
        if name == "report":
            return _for_reports(self)
        return self


@functools.lru_cache(maxsize=8)
def _for_reports(limits: Limits) -> Limits:
    return dataclasses.replace(limits, json_values=limits.report_json_values)


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
    body_limit: str = "run"  # one of BODY_LIMITS, a field of Limits
    operation_id: str | None = None
    in_schema: bool = True
    scope: Scope | None = None  # what an API key needs to call it (client and admin routes)

    @property
    def name(self) -> str:
        return self.operation_id or self.handler.__name__

    def __post_init__(self) -> None:
        if self.body is not None and self.body_limit not in BODY_LIMITS:
            raise ValueError(f"{self.path}: unknown body limit {self.body_limit!r}")


@dataclasses.dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclasses.dataclass(frozen=True)
class WrongMethod:
    allowed: tuple[str, ...]


def parameters(path: str) -> list[tuple[int, str]]:
    """``/v2/{endpoint}/status/{job_id}`` → ``[(2, "endpoint"), (4, "job_id")]``: the segments
    (split on ``/``) that are parameters. A parameter is a whole segment."""
    found = []
    for i, segment in enumerate(path.split("/")):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if not name.isidentifier():
                raise ValueError(f"{path}: bad parameter {segment!r}")
            found.append((i, name))
    return found


Shape = tuple[int, tuple[int, ...]]  # segment count, positions of the fixed segments


@dataclasses.dataclass
class _Path:
    """The routes (by method) of one path template."""

    params: list[tuple[int, str]]
    methods: dict[str, Route] = dataclasses.field(default_factory=dict)


class Router:
    """Finds a request's route with one dictionary lookup per path shape (how many segments,
    which are fixed), not a regex per route: the same answer as matching each route in turn,
    since no two routes share a method and path."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        # segment count -> [(key of the fixed segments, {their values: _Path})], one per shape
        self._shapes: dict[int, list[tuple[Callable[[list[str]], Any], dict[Any, _Path]]]] = {}
        by_shape: dict[Shape, dict[Any, _Path]] = {}
        for route in self.routes:
            segments, params = route.path.split("/"), parameters(route.path)
            fixed = tuple(i for i in range(len(segments)) if i not in dict(params))
            key = operator.itemgetter(*fixed)
            if (shape := (len(segments), fixed)) not in by_shape:
                by_shape[shape] = {}
                self._shapes.setdefault(len(segments), []).append((key, by_shape[shape]))
            found = by_shape[shape].setdefault(key(segments), _Path(params))
            if route.method in found.methods:
                raise ValueError(f"{route.method} {route.path} is declared twice")
            found.methods[route.method] = route

    def match(self, method: str, path: str) -> Match | WrongMethod | None:
        """The route and its path parameters. HEAD is served by an open GET route (health,
        docs): those change nothing, while a GET on the API may (a take, a stream drain)."""
        segments = path.split("/")
        head = method == "HEAD"
        allowed: set[str] = set()
        for key, paths in self._shapes.get(len(segments), ()):
            found = paths.get(key(segments))
            if found is None:
                continue
            params = {name: segments[i] for i, name in found.params}
            if "" in params.values():
                continue  # an empty parameter: no route has it
            route = found.methods.get("GET" if head else method)
            if route is None or (head and route.auth is not Auth.NONE):
                allowed.update(found.methods)
                continue
            return Match(route, params)
        return WrongMethod(tuple(sorted(allowed))) if allowed else None
