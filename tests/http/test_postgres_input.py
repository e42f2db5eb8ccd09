"""Hostile input against the app on PostgreSQL, whose text columns cannot hold a NUL character:
every route answers a 4xx JSON error naming the field (issue 8: these were 500s), and NULs
inside JSON (kept encoded, as bytes) round-trip. Skipped when PostgreSQL is not reachable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from anypod import store as stores
from anypod.endpoints import Endpoint
from anypod.service import JobService, Timing
from tests.http.conftest import Api, Seen, app_for, check_contract


@pytest.fixture
async def pg_api(pg_url: str) -> AsyncIterator[Api]:
    seen: list[Seen] = []
    timing = Timing(take_hold=0.2, lease=30, counts_cache=0)
    async with stores.from_url(pg_url) as store:
        service = JobService(store, {"ep": Endpoint(name="ep")}, timing=timing)
        app = app_for(service, seen)
        token = await service.mint_worker_token("ep")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, service, token, app)
    check_contract(seen)


async def held_job(api: Api) -> str:
    job_id: str = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json()["id"] == job_id
    return job_id


CLIENT = [
    ("GET", "/v2/ep/status/a%00b", "job_id"),
    ("POST", "/v2/ep/status/a%00b", "job_id"),
    ("GET", "/v2/ep/status-sync/a%00b?wait=0", "job_id"),
    ("GET", "/v2/ep/stream/a%00b", "job_id"),
    ("POST", "/v2/ep/cancel/a%00b", "job_id"),
    ("POST", "/v2/ep/retry/a%00b", "job_id"),
]
WORKER = [
    ("GET", "/v2/ep/ping/w%00", "worker_id"),
    ("GET", "/v2/ep/ping/w1?gpu=a%00b", "gpu"),
    ("GET", "/v2/ep/ping/w1?job_id=a%00b", "job_id"),
    ("GET", "/v2/ep/ping/w1?runpod_version=%00", "runpod_version"),
    ("GET", "/v2/ep/ping/w1?status=unhealthy&check=x&reason=%00", "reason"),
    ("GET", "/v2/ep/job-take/w%00", "worker_id"),
    ("GET", "/v2/ep/job-take/w1?gpu=%00", "gpu"),
    ("GET", "/v2/ep/job-take-batch/w%00?batch_size=2", "worker_id"),
    ("GET", "/v2/ep/job-take-batch/w1?gpu=%00", "gpu"),
    ("GET", "/v2/ep/job-stop/w%00", "worker_id"),
    ("POST", "/v2/ep/job-done/w%00/{job}", "worker_id"),
    ("POST", "/v2/ep/job-done/w1/a%00b", "job_id"),
    ("POST", "/v2/ep/job-done/w1/{job}?gpu=%00", "gpu"),
    ("POST", "/v2/ep/job-done/w1/{job}?isStream=%00", "isStream"),
    ("POST", "/v2/ep/job-stream/w%00/{job}", "worker_id"),
    ("POST", "/v2/ep/job-stream/w1/a%00b", "job_id"),
    ("POST", "/v2/ep/job-stream/w1/{job}?gpu=%00", "gpu"),
    ("POST", "/v2/ep/job-done-batch/w%00", "worker_id"),
]


@pytest.mark.parametrize(("method", "path", "field"), CLIENT)
async def test_nul_in_client_routes_is_400(pg_api: Api, method: str, path: str, field: str) -> None:
    reply = await pg_api.http.request(method, path)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body.pop("request_id") == reply.headers["x-request-id"]
    assert body == {
        "error": f"{field}: must not contain a NUL character",
        "code": "invalid_request",
        "field": field,
    }


@pytest.mark.parametrize(("method", "path", "field"), WORKER)
async def test_nul_in_worker_routes_is_400_and_changes_nothing(
    pg_api: Api, method: str, path: str, field: str
) -> None:
    job_id = await held_job(pg_api)
    body = b"[]" if "batch" in path else b'{"output": 1}'
    reply = await pg_api.http.request(
        method,
        path.format(job=job_id),
        content=body if method == "POST" else None,
        headers=pg_api.worker_headers(),
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field and reply.json()["code"] == "invalid_request"
    assert (await pg_api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_PROGRESS"


async def test_nul_in_stored_text_fields_is_400(pg_api: Api) -> None:
    hook = await pg_api.http.post("/v2/ep/run", json={"input": {}, "webhook": "http://a/\u0000"})
    assert hook.status_code == 400 and hook.json()["field"] == "webhook"
    job_id = await held_job(pg_api)
    batch = await pg_api.http.post(
        "/v2/ep/job-done-batch/w1",
        json=[{"id": f"{job_id}\u0000", "result": {}}],
        headers=pg_api.worker_headers(),
    )
    assert batch.status_code == 400 and batch.json()["field"] == "[0].id"


async def test_nul_inside_json_round_trips(pg_api: Api) -> None:
    odd = {"a\u0000b": "c\u0000d", "list": ["\u0000"]}
    job_id = (await pg_api.http.post("/v2/ep/run", json={"input": odd})).json()["id"]
    taken = await pg_api.http.get("/v2/ep/job-take/w1", headers=pg_api.worker_headers())
    assert taken.json() == {"id": job_id, "input": odd}
    headers = pg_api.worker_headers()
    chunk = await pg_api.http.post(
        f"/v2/ep/job-stream/w1/{job_id}", json={"output": odd}, headers=headers
    )
    assert chunk.status_code == 200, chunk.text
    done = await pg_api.http.post(
        f"/v2/ep/job-done/w1/{job_id}", json={"output": odd, "error": "x\u0000"}, headers=headers
    )
    assert done.status_code == 200, done.text
    status = (await pg_api.http.get(f"/v2/ep/status/{job_id}")).json()
    assert status["status"] == "FAILED" and status["output"] == odd
    assert status["error"] == "x\u0000"
    stream = (await pg_api.http.get(f"/v2/ep/stream/{job_id}")).json()
    assert stream["stream"] == [{"output": odd}]
