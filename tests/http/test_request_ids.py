"""Every request has an id (issue 9): a sane ``X-Request-Id`` of the client's is kept, any
other is replaced by a new one; the id comes back in the ``X-Request-Id`` header, in every JSON
error body, and on every log line written while the request is handled."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from anypod import logs
from anypod.endpoints import Endpoint
from anypod.http.middleware import Middleware
from anypod.runtime import Runtime
from anypod.service import JobService
from anypod.settings import Settings
from tests.http.conftest import Api, Seen, app_for

NEW_ID = re.compile(r"[0-9a-f]{16}")


def id_of(reply: httpx.Response) -> str:
    """The reply's id; an error body's must be the same."""
    found = reply.headers["x-request-id"]
    if reply.status_code >= 400:
        assert reply.json()["request_id"] == found, reply.text
    return found


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What anypod's loggers write, through the server's own formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.SafeFormatter(logs.FORMAT))
    root = logging.getLogger("anypod")
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


async def test_every_reply_and_error_body_carries_an_id(api: Api) -> None:
    replies = [
        await api.http.get("/health"),
        await api.http.post("/v2/ep/run", json={"input": {}}),
        await api.http.get("/v2/ep/status/no-such-job"),  # 404 job_not_found
        await api.http.get("/no/such/route"),  # 404 not_found
        await api.http.delete("/v2/ep/run"),  # 405
        await api.http.post("/v2/ep/run", content=b"{"),  # 400
        await api.http.get("/v2/ep/job-take/w1", headers={"Authorization": "wrong"}),  # 401
    ]
    assert [r.status_code for r in replies] == [200, 200, 404, 404, 405, 400, 401]
    ids = [id_of(r) for r in replies]
    assert all(NEW_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids), ids


@pytest.mark.parametrize(
    "given", ["abc-123_x.y:z", "00-4bf92f3577b34da6a3ce929d0e0e4736-01", "A" * 128]
)
async def test_a_sane_client_id_is_kept(api: Api, given: str) -> None:
    reply = await api.http.get("/v2/ep/status/nope", headers={"X-Request-Id": given})
    assert reply.status_code == 404 and id_of(reply) == given


@pytest.mark.parametrize(
    "given", [b"A" * 129, b"a b", b"<script>", b"x;y", "\u00e9t\u00e9".encode(), b"\x1b[31m", b""]
)
async def test_any_other_client_id_is_replaced(api: Api, given: bytes) -> None:
    reply = await api.http.get("/v2/ep/status/nope", headers={b"X-Request-Id": given})
    assert NEW_ID.fullmatch(id_of(reply)), reply.headers


class LogsThenFails:
    """Middleware: logs a line, then raises (an unhandled error: a logged traceback and a 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/health":
            logging.getLogger("anypod.test").warning("handling %s", scope["path"])
            raise RuntimeError("broken on purpose")
        await self.app(scope, receive, send)


@pytest.fixture
async def failing(service: JobService, seen: list[Seen]) -> AsyncIterator[httpx.AsyncClient]:
    app = app_for(service, seen, extra=(Middleware(LogsThenFails),))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_log_lines_written_while_handling_carry_the_id(
    failing: httpx.AsyncClient, lines: io.StringIO
) -> None:
    first = await failing.get("/health", headers={"X-Request-Id": "trace-one"})
    second = await failing.get("/health")
    assert first.status_code == second.status_code == 500
    assert id_of(first) == "trace-one" and first.json()["code"] == "internal"
    text = lines.getvalue()
    for rid in ("trace-one", id_of(second)):
        marked = [ln for ln in text.splitlines() if f"[{rid}]:" in ln]
        assert any("handling /health" in ln for ln in marked), text
        assert any("unhandled error" in ln for ln in marked), text


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[int]:
    settings = Settings(port=0, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    runtime = Runtime(settings, [Endpoint(name="ep", workers=0)])
    await runtime.start()
    try:
        yield runtime.http.port
    finally:
        await runtime.stop()


async def test_the_server_gives_every_request_an_id(server: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server}") as http:
        plain = [id_of(await http.get("/health")) for _ in range(3)]
        kept = await http.get("/v2/ep/status/nope", headers={"X-Request-Id": "mine-1"})
        replaced = await http.get("/v2/ep/status/nope", headers={"X-Request-Id": "a" * 200})
    assert all(NEW_ID.fullmatch(i) for i in plain) and len(set(plain)) == 3, plain
    assert id_of(kept) == "mine-1" and NEW_ID.fullmatch(id_of(replaced))
    assert [v for k, v in kept.headers.multi_items() if k == "x-request-id"] == ["mine-1"]


async def test_a_request_the_server_cannot_parse_gets_an_id_too(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"NOT HTTP AT ALL\r\nX-Request-Id: mine-2\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    reply = orjson.loads(body)
    assert reply["code"] == "invalid_request" and NEW_ID.fullmatch(reply["request_id"])
    assert f"x-request-id: {reply['request_id']}".encode() in head
