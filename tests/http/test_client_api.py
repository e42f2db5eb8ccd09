"""RunPod's client API: shapes, status codes, and every kind of bad input."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from anypod.access import Credentials
from anypod.service import JobService
from tests.http.conftest import Api, Seen, app_for


async def take(api: Api, worker: str = "w1") -> dict[str, object]:
    reply = await api.http.get(f"/v2/ep/job-take/{worker}", headers=api.worker_headers())
    assert reply.status_code == 200, reply.text
    job: dict[str, object] = reply.json()
    return job


async def done(api: Api, job_id: str, body: str, worker: str = "w1") -> None:
    reply = await api.http.post(
        f"/v2/ep/job-done/{worker}/{job_id}?isStream=false",
        content=body,
        headers={**api.worker_headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 200, reply.text


async def test_run_then_status_through_completion(api: Api) -> None:
    reply = await api.http.post(
        "/v2/ep/run", json={"input": {"x": 1}}, headers={"Authorization": "Bearer k1"}
    )
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    job_id = reply.json()["id"]
    assert reply.json() == {"id": job_id, "status": "IN_QUEUE"}
    assert (await api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_QUEUE"
    job = await take(api)
    assert job == {"id": job_id, "input": {"x": 1}}
    await done(api, job_id, '{"output": {"y": 2}}')
    for method in ("GET", "POST"):
        status = (await api.http.request(method, f"/v2/ep/status/{job_id}")).json()
        assert status["status"] == "COMPLETED" and status["output"] == {"y": 2}
        assert status["workerId"] == "w1"
        assert isinstance(status["delayTime"], int) and isinstance(status["executionTime"], int)
    stored = await api.service.store.get(job_id)
    assert stored is not None and stored.owner is None  # no keys at all: development mode


async def test_runsync_waits_for_the_worker(api: Api) -> None:
    async def worker() -> None:
        job = await take(api)
        await done(api, str(job["id"]), '{"output": "fast"}')

    task = asyncio.create_task(worker())
    reply = await api.http.post("/v2/ep/runsync", json={"input": {}})
    await task
    body = reply.json()
    assert body["status"] == "COMPLETED" and body["output"] == "fast"
    assert body["id"].startswith("sync-")


async def test_runsync_returns_in_queue_when_wait_passes(api: Api) -> None:
    reply = await api.http.post("/v2/ep/runsync?wait=50", json={"input": {}})
    assert reply.status_code == 200 and reply.json()["status"] == "IN_QUEUE"


async def test_failed_job_keeps_worker_error_string(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await take(api)
    await done(api, job_id, '{"error": "{\\"error_type\\": \\"x\\"}"}')
    status = (await api.http.get(f"/v2/ep/status/{job_id}")).json()
    assert status["status"] == "FAILED" and status["error"] == '{"error_type": "x"}'


@pytest.mark.parametrize(
    ("path", "body", "code", "field"),
    [
        ("/v2/ep/run", b"{not json", 400, "body"),
        ("/v2/ep/run", b"", 400, "body"),
        ("/v2/ep/run", b"[]", 400, "body"),
        ("/v2/ep/run", b'{"inptu": {}}', 400, "input"),
        ("/v2/ep/run", b'{"input": "s"}', 400, "input"),
        ("/v2/ep/run", b'{"input": {}, "policy": {"ttl": -1}}', 400, "policy.ttl"),
        ("/v2/ep/runsync", b'{"input": {}, "webhook": 5}', 400, "webhook"),
        ("/v2/ep/run", b'{"input": {"blob": "' + b"x" * 3000 + b'"}}', 413, "body"),
        ("/v2/ep/runsync?wait=abc", b'{"input": {}}', 400, "wait"),
        ("/v2/ep/run", b'{"input": ' + b"[" * 300 + b"]" * 300 + b"}", 400, "input"),
        ("/v2/ep/runsync?wait=0", b'{"input": ' + b"[" * 1500 + b"]" * 1500 + b"}", 400, "body"),
        ("/v2/ep/run", b'{"input": 5}', 400, "input"),
        ("/v2/ep/run", b'{"input": {}, "policy": "fast"}', 400, "policy"),
        ("/v2/ep/run", b'{"input": {}, "s3Config": [1]}', 400, "s3Config"),
        ("/v2/ep/run", b'{"input": {}, "webhook": "javascript:alert(1)"}', 400, "webhook"),
        ("/v2/ep/run", b"\xff\xfe{}", 400, "body"),
        ("/v2/ep/run", b'{"input": {"a": NaN}}', 400, "body"),
        ("/v2/ep/runsync?wait=-1", b'{"input": {}}', 400, "wait"),
        ("/v2/ep/runsync?wait=1e9", b'{"input": {}}', 400, "wait"),
    ],
)
async def test_bad_input_gets_json_error_naming_the_field(
    api: Api, path: str, body: bytes, code: int, field: str
) -> None:
    reply = await api.http.post(path, content=body)
    assert reply.status_code == code, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["field"] == field and field in reply.json()["error"]
    health = (await api.http.get("/v2/ep/health")).json()
    assert health["jobs"]["inQueue"] == 0  # nothing half-accepted


async def test_runsync_allows_a_bigger_body_than_run(api: Api) -> None:
    body = {"input": {"blob": "x" * 3000}}
    assert (await api.http.post("/v2/ep/run", json=body)).status_code == 413
    assert (await api.http.post("/v2/ep/runsync?wait=1", json=body)).status_code == 200


async def test_unknown_endpoint_and_job_are_404_json(api: Api) -> None:
    for method, path in [
        ("POST", "/v2/nope/run"),
        ("GET", "/v2/ep/status/missing"),
        ("POST", "/v2/ep/cancel/missing"),
        ("GET", "/v2/nope/health"),
        ("GET", "/v2/ep/stream/missing"),
    ]:
        reply = await api.http.request(method, path, json={"input": {}})
        assert reply.status_code == 404 and "error" in reply.json(), (method, path)
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    assert (await api.http.get(f"/v2/other/status/{job_id}")).status_code == 404


async def test_cancel_queued_and_retry_rules(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    cancelled = (await api.http.post(f"/v2/ep/cancel/{job_id}")).json()
    assert cancelled["status"] == "CANCELLED"
    conflict = await api.http.post(f"/v2/ep/retry/{job_id}")
    assert conflict.status_code == 409 and "CANCELLED" in conflict.json()["error"]
    failed_id = (await api.http.post("/v2/ep/run", json={"input": {"k": 1}})).json()["id"]
    await take(api)
    await done(api, failed_id, '{"error": "flaky"}')
    assert (await api.http.post(f"/v2/ep/retry/{failed_id}")).json() == {
        "id": failed_id,
        "status": "IN_QUEUE",
    }
    again = await take(api)
    assert again == {"id": failed_id, "input": {"k": 1}}


async def test_purge_queue_and_alias(api: Api) -> None:
    for _ in range(3):
        await api.http.post("/v2/ep/run", json={"input": {}})
    assert (await api.http.post("/v2/ep/purge-queue")).json() == {
        "removed": 3,
        "status": "completed",
    }
    await api.http.post("/v2/ep/run", json={"input": {}})
    assert (await api.http.post("/v2/ep/purge")).json()["removed"] == 1


async def test_stream_drains_and_always_has_the_key(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    empty = (await api.http.get(f"/v2/ep/stream/{job_id}")).json()
    assert empty == {"id": job_id, "status": "IN_QUEUE", "stream": []}
    await take(api)
    for i in range(3):
        await api.http.post(
            f"/v2/ep/job-stream/w1/{job_id}?isStream=false",
            content=f'{{"output": {i}}}',
            headers=api.worker_headers(),
        )
    first = (await api.http.get(f"/v2/ep/stream/{job_id}")).json()
    assert first["stream"] == [{"output": 0}, {"output": 1}, {"output": 2}]
    await done(api, job_id, '{"output": [0, 1, 2]}')
    last = (await api.http.post(f"/v2/ep/stream/{job_id}")).json()
    assert last == {"id": job_id, "status": "COMPLETED", "stream": []}


async def test_stream_wait_holds_for_the_next_chunk(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await take(api)

    async def later() -> None:
        await asyncio.sleep(0.1)
        await api.http.post(
            f"/v2/ep/job-stream/w1/{job_id}",
            content='{"output": "hi"}',
            headers=api.worker_headers(),
        )

    task = asyncio.create_task(later())
    reply = (await api.http.get(f"/v2/ep/stream/{job_id}?wait=5000")).json()
    await task
    assert reply["stream"] == [{"output": "hi"}]


async def test_status_sync_holds_until_done(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await take(api)

    async def later() -> None:
        await asyncio.sleep(0.1)
        await done(api, job_id, '{"output": 7}')

    task = asyncio.create_task(later())
    reply = (await api.http.get(f"/v2/ep/status-sync/{job_id}?wait=5000")).json()
    await task
    assert reply["status"] == "COMPLETED" and reply["output"] == 7


async def test_api_keys_when_configured(service: JobService, seen: list[Seen]) -> None:
    service.credentials = Credentials(service.store, bootstrap=("secret",))
    app = app_for(service, seen)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.post("/v2/ep/run", json={"input": {}})).status_code == 401
        ok = await http.post("/v2/ep/run", json={"input": {}}, headers={"Authorization": "secret"})
        assert ok.status_code == 200
        bearer = await http.post(
            "/v2/ep/run", json={"input": {}}, headers={"Authorization": "Bearer secret"}
        )
        assert bearer.status_code == 200
