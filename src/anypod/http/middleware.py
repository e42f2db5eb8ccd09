"""The middleware chain: ASGI middleware that wraps every route, in the order listed.

The app matches the route first (``scope["anypod.route"]``: a :class:`routing.Match`, a
:class:`routing.WrongMethod`, or None for an unknown path), so middleware can see which
operation a request is, then runs the chain, then the route. :data:`DEFAULT` is what
``create_app`` uses (nothing: the hot path pays for no layer it does not need); pass
``middleware=`` to add CORS, metrics or limits, and every route, docs and 404s included, goes
through them. An exception from any of them is answered by :func:`unhandled`.
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


async def unhandled(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What the app does with an exception nothing handled (in a route or any middleware):
    log it and answer a JSON 500, unless the reply had started (then the server closes the
    connection). The app calls this around the whole chain, so no middleware is needed for it
    and no layer is added per request."""
    log.exception("unhandled error on %s %r", scope.get("method"), scope.get("path"))
    if scope["type"] != "http":
        raise exc
    try:
        await errors.internal()(scope, receive, send)
    except Exception:
        raise exc from None


DEFAULT: tuple[Middleware, ...] = ()
"""None: every route runs with no middleware unless ``create_app(middleware=...)`` adds some."""


def chain(app: ASGIApp, middleware: tuple[Middleware, ...]) -> ASGIApp:
    """``middleware[0]`` outermost."""
    for item in reversed(middleware):
        app = item.wrap(app)
    return app
