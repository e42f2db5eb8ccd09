"""The connection cap's parts (issue 9): how the caps follow from the open-file limit, raising
that limit at start, and which requests a crowded server refuses: only those that would hold
their connection (runsync, status-sync, stream), with a JSON 503 that closes it. The whole, on a
real server short of file descriptors, is tests/e2e/test_connection_cap.py."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from anypod.http import capacity
from anypod.http.middleware import Middleware
from anypod.service import JobService
from tests.http.conftest import Seen, app_for


@pytest.mark.parametrize(
    ("setting", "files", "caps"),
    [
        (0, 256, (224, 196)),
        (0, 1024, (896, 784)),
        (0, 1 << 20, ((1 << 20) - 1024, ((1 << 20) - 1024) * 7 // 8)),
        (0, 40, (16, 12)),
        (100, 256, (100, 88)),
    ],
)
def test_caps_follow_the_open_file_limit(setting: int, files: int, caps: tuple[int, int]) -> None:
    assert capacity.caps(setting, files) == caps


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 512))

    code = "from anypod.http import capacity; import resource; capacity.raise_open_file_limit();"
    code += "print(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    out = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=limit, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["512", "512"]


class Crowded:
    """Middleware: every request comes as if the server were crowded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[capacity.CROWDED] = True
        await self.app(scope, receive, send)


@pytest.fixture
async def crowded(service: JobService, seen: list[Seen]) -> AsyncIterator[httpx.AsyncClient]:
    app = app_for(service, seen, extra=(Middleware(Crowded),))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        client.headers["Authorization"] = await service.mint_worker_token("ep")
        yield client


async def test_a_crowded_server_refuses_only_what_would_hold(crowded: httpx.AsyncClient) -> None:
    job = (await crowded.post("/v2/ep/run", json={"input": {}})).json()["id"]
    served = [
        await crowded.get("/health"),
        await crowded.get(f"/v2/ep/status/{job}"),
        await crowded.get("/v2/ep/job-take/w1"),  # workers are never refused
        await crowded.post(f"/v2/ep/job-done/w1/{job}", json={"output": 1}),
    ]
    assert [r.status_code for r in served] == [200, 200, 200, 200], [r.text for r in served]
    refused = [
        await crowded.post("/v2/ep/runsync", json={"input": {}}),
        await crowded.get(f"/v2/ep/status-sync/{job}?wait=5000"),
        await crowded.post(f"/v2/ep/status-sync/{job}"),
        await crowded.get(f"/v2/ep/stream/{job}"),
    ]
    for reply in refused:
        assert reply.status_code == 503 and reply.json()["code"] == "busy", reply.text
        assert reply.headers["retry-after"] == "1" and reply.headers["connection"] == "close"
        assert reply.json()["request_id"] == reply.headers["x-request-id"]
