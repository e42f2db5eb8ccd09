"""The real app in process, over httpx's ASGI transport; the store is a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from anypod import store as stores
from anypod.endpoints import Endpoint
from anypod.http import create_app
from anypod.service import JobService, Timing
from anypod.settings import Settings


class Api:
    def __init__(
        self, client: httpx.AsyncClient, service: JobService, token: str, app: FastAPI
    ) -> None:
        self.http = client
        self.app = app
        self.service = service
        self.token = token

    def worker_headers(self) -> dict[str, str]:
        return {"Authorization": self.token}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = stores.from_url(f"sqlite:///{tmp_path / 'http.db'}", migrate=True)
    timing = Timing(take_hold=0.3, stop_hold=0.3, lease=30, counts_cache=0)
    service = JobService(
        store, {"ep": Endpoint(name="ep"), "other": Endpoint(name="other")}, timing=timing
    )
    settings = Settings(run_max_bytes=2048, runsync_max_bytes=4096, take_hold_seconds=0.3)
    app = create_app(service, settings, manage_store=False)
    await store.open()
    token = await service.mint_worker_token("ep")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, service, token, app)
    await store.close()
