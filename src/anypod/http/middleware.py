"""The middleware chain: ASGI middleware that wraps every route, in the order listed.

The app matches the route first (``scope["anypod.route"]``: the :class:`routing.Route`, or None
for an unknown path or method), so middleware can see which operation a request is, then runs
the chain, then the route. :data:`DEFAULT` is what ``create_app`` uses; pass ``middleware=`` to
add CORS, metrics or limits, and every route, docs and 404s included, goes through them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from anypod.http import errors

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Middleware:
    factory: Callable[..., ASGIApp]  # factory(app, **options) -> app
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        return self.factory(app, **self.options)


class ServerErrors:
    """Outermost: an exception nothing else handled is logged and answered with a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            log.exception("unhandled error on %s %r", scope.get("method"), scope.get("path"))
            if scope["type"] != "http":
                raise
            try:  # (no wrapper on send to track the reply: this costs nothing until it happens)
                await errors.internal()(scope, receive, send)
            except Exception:  # the reply had started: the server closes the connection
                raise exc from None


DEFAULT: tuple[Middleware, ...] = (Middleware(ServerErrors),)


def chain(app: ASGIApp, middleware: tuple[Middleware, ...]) -> ASGIApp:
    """``middleware[0]`` outermost."""
    for item in reversed(middleware):
        app = item.wrap(app)
    return app
