"""The HTTP layer: one route table (``routes.py``) that is the ASGI app (``app.py``), behind
one middleware chain (``middleware.py``); the caller is resolved once (``auth.py``) and every
error reply is JSON (``errors.py``). Served by uvicorn (``server.py``)."""

from __future__ import annotations

from anypod.http.app import App, create_app

__all__ = ["App", "create_app"]
