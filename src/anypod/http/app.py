"""The ASGI application: the route table, behind the middleware chain. Only HTTP: the store,
sweeper and webhooks are started and stopped by :mod:`anypod.runtime`.

A request is matched to its route first (``scope["anypod.route"]``), goes through every
middleware, and is then served: the caller resolved from its credential, query and body
validated with the route's models, one handler call. Every error reply is JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from anypod import __version__, errors
from anypod.http import capacity, openapi, request_ids, requests
from anypod.http import errors as replies
from anypod.http.auth import Authenticator
from anypod.http.context import Context
from anypod.http.middleware import DEFAULT, Middleware, chain, unhandled
from anypod.http.routes import ROUTES
from anypod.http.routing import Limits, Match, Route, Router, WrongMethod
from anypod.service import JobService

DESCRIPTION = "RunPod-compatible serverless job API on your own machines."


class App:
    def __init__(
        self,
        service: JobService,
        *,
        routes: Sequence[Route],
        middleware: Sequence[Middleware],
        authenticator: Authenticator,
        limits: Limits,
    ) -> None:
        self.service = service
        self.router = Router(routes)
        self.authenticator = authenticator
        self.limits = limits
        self._stack = chain(self._serve, tuple(middleware))
        self._openapi: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        scope["app"] = self
        if scope["type"] == "http":
            scope["anypod.route"] = self.router.match(scope["method"], scope["path"])
            send = request_ids.adopt(scope, send)
        try:
            await self._stack(scope, receive, send)
        except Exception as exc:
            await unhandled(scope, receive, send, exc)

    def openapi(self) -> Any:
        """The OpenAPI document of this app's routes (made once)."""
        if self._openapi is None:
            self._openapi = openapi.document(
                self.router.routes, title="anypod", version=__version__, description=DESCRIPTION
            )
        return self._openapi

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets
        found: Match | WrongMethod | None = scope["anypod.route"]
        if isinstance(found, WrongMethod):
            response = replies.wrong_method(scope["method"], found.allowed)
        elif found is None:
            response = replies.not_found(scope["path"])
        elif capacity.CROWDED in scope and capacity.holds(found.route):
            response = replies.busy()
        else:
            response = await self._respond(found, Request(scope, receive))
        await response(scope, receive, send)

    async def _respond(self, found: Match, request: Request) -> Response:
        route, params = found.route, found.params
        try:
            requests.path(params, request.scope["path"])
            caller = await self.authenticator.resolve(route, request, params.get("endpoint"))
            query = body = None
            if route.query is not None:
                query = requests.query(route.query, request.scope["query_string"])
            if route.body is not None:
                limit = getattr(self.limits, route.body_limit)
                # no name kept for the raw bytes: they are freed once decoded, not held (with
                # the decoded body) for as long as the handler runs
                body = requests.body(
                    route.body,
                    await requests.read_body(request, limit),
                    self.limits.for_body(route.body_limit),
                )
            return await route.handler(Context(request, params, caller, self.service, query, body))
        except errors.AnypodError as exc:
            return replies.render(exc, request.method, request.url.path)
        except ClientDisconnect:  # gone mid-upload: nothing was done, no one to answer
            return replies.render(errors.InvalidRequest("client went away"), "", "")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start here (the runtime owns lifecycles); acknowledge, for servers that ask."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(
    service: JobService,
    *,
    limits: Limits | None = None,
    routes: Sequence[Route] = ROUTES,
    middleware: Sequence[Middleware] = DEFAULT,
) -> App:
    """The API over ``service``: every route of ``routes``, behind ``middleware`` (outermost
    first). Who may call what is the service's :class:`access.Credentials`."""
    return App(
        service,
        routes=routes,
        middleware=middleware,
        authenticator=Authenticator(service),
        limits=limits or Limits(),
    )
