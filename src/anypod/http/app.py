"""``create_app(service, settings)``: the FastAPI application, wired explicitly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from anypod import __version__
from anypod.http import client_api, errors, system, worker_api
from anypod.http.fastpath import FastPath, routes_of
from anypod.service import JobService
from anypod.settings import Settings
from anypod.sweeper import Sweeper
from anypod.webhooks import WebhookPolicy, WebhookSender

log = logging.getLogger(__name__)


def create_app(service: JobService, settings: Settings, *, manage_store: bool = True) -> FastPath:
    """The API. With ``manage_store`` the app opens and closes the store in its lifespan.

    Returns the ASGI app: the hot ``/v2`` routes dispatched directly, the rest by FastAPI
    (reachable as ``.app``)."""
    sender = WebhookSender(
        service.store,
        WebhookPolicy(
            secret=settings.webhook_secret, allow_private=settings.allow_private_webhooks
        ),
        clock=service.clock,
    )
    sweeper = Sweeper(service, sender, interval=settings.sweep_interval_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_store:
            await service.store.open()
        await service.notifier.start()
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await service.notifier.stop()
            if manage_store:
                await service.store.close()

    app = FastAPI(
        title="anypod",
        version=__version__,
        lifespan=lifespan,
        description="RunPod-compatible serverless job API on your own machines.",
    )
    app.state.service = service
    app.state.settings = settings
    errors.install(app)
    app.include_router(system.router)
    app.include_router(client_api.router)
    app.include_router(worker_api.router)
    return FastPath(
        app,
        [
            routes_of(client_api.router, _client_guard),
            routes_of(worker_api.router, worker_api.require_worker_token),
        ],
    )


async def _client_guard(request: Request, endpoint: str) -> None:
    await client_api.require_key(request)
