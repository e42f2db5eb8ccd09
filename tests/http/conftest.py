"""The real app in process, over httpx's ASGI transport; the store is a real SQLite file.

Every reply in these tests is also checked against the route table: its status must be one the
route documents, and its body must validate against the documented model (``Contract``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anypod import store as stores
from anypod.endpoints import Endpoint
from anypod.http import App, create_app
from anypod.http.middleware import DEFAULT, Middleware
from anypod.http.routing import Limits, Match
from anypod.service import JobService, Timing


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    found: Any
    status: int = 0
    content_type: str = ""
    body: bytes = b""


class Contract:
    """Middleware recording each exchange, for :func:`check_contract`."""

    def __init__(self, app: ASGIApp, seen: list[Seen]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = Seen(scope["method"], scope["path"], scope.get("anypod.route"))
        self.seen.append(seen)

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
                headers = dict(message.get("headers", []))
                seen.content_type = headers.get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                seen.body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, recording)


def check_contract(seen: Sequence[Seen]) -> None:
    for s in seen:
        where = f"{s.method} {s.path} -> {s.status}"
        if not isinstance(s.found, Match):
            assert s.status in (404, 405) and s.content_type == "application/json", where
            continue
        route = s.found.route
        assert s.status in route.responses, f"{where}: not documented for {route.path}"
        model = route.responses[s.status]
        if model is not None:
            assert s.content_type == "application/json", where
            model.model_validate_json(s.body)


class Api:
    def __init__(self, client: httpx.AsyncClient, service: JobService, token: str, app: App):
        self.http = client
        self.app = app
        self.service = service
        self.token = token

    def worker_headers(self) -> dict[str, str]:
        return {"Authorization": self.token}


def app_for(
    service: JobService, seen: list[Seen], *, extra: Sequence[Middleware] = (), **options: Any
) -> App:
    """The app with small body limits, recording every exchange for the contract check."""
    chain = (*DEFAULT, Middleware(Contract, {"seen": seen}), *extra)
    return create_app(service, limits=Limits(run=2048, runsync=4096), middleware=chain, **options)


@pytest.fixture
def seen() -> list[Seen]:
    return []


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[JobService]:
    store = stores.from_url(f"sqlite:///{tmp_path / 'http.db'}", migrate=True)
    timing = Timing(take_hold=0.3, lease=30, counts_cache=0)
    endpoints = {"ep": Endpoint(name="ep"), "other": Endpoint(name="other")}
    async with store:
        yield JobService(store, endpoints, timing=timing)


@pytest.fixture
async def api(service: JobService, seen: list[Seen]) -> AsyncIterator[Api]:
    app = app_for(service, seen)
    token = await service.mint_worker_token("ep")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, service, token, app)
    check_contract(seen)
