"""RunPod's worker protocol, as the runpod SDK speaks it."""

from __future__ import annotations

import asyncio

import httpx

from anypod import AsyncClient
from anypod.http.routing import Limits
from anypod.worker.coalesce import DoneCoalescer
from tests.http.conftest import Api


async def submit(api: Api, n: int = 1, **extra: object) -> list[str]:
    ids = []
    for i in range(n):
        reply = await api.http.post("/v2/ep/run", json={"input": {"i": i}, **extra})
        ids.append(reply.json()["id"])
    return ids


async def test_worker_routes_need_the_endpoints_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "wrong"}):
        reply = await api.http.get("/v2/ep/job-take/w1", headers=headers)
        assert reply.status_code == 401 and "token" in reply.json()["error"]
    other = await api.http.get("/v2/other/job-take/w1", headers=api.worker_headers())
    assert other.status_code == 401
    bearer = await api.http.get("/v2/ep/ping/w1", headers={"Authorization": f"Bearer {api.token}"})
    assert bearer.status_code == 200


async def test_take_holds_then_204(api: Api) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    reply = await api.http.get("/v2/ep/job-take/w1?job_in_progress=0", headers=api.worker_headers())
    assert reply.status_code == 204 and loop.time() - start >= 0.25


async def test_held_take_wakes_on_submit(api: Api) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await submit(api)

    task = asyncio.create_task(later())
    reply = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    await task
    assert reply.status_code == 200 and reply.json()["input"] == {"i": 0}


async def test_batch_take_and_passthrough_fields(api: Api) -> None:
    await submit(api, 3, webhook="http://127.0.0.1:9/cb", s3Config={"bucketName": "b"})
    reply = await api.http.get(
        "/v2/ep/job-take-batch/w1?batch_size=2&job_in_progress=1", headers=api.worker_headers()
    )
    jobs = reply.json()
    assert isinstance(jobs, list) and len(jobs) == 2
    assert jobs[0]["s3Config"] == {"bucketName": "b"} and jobs[0]["webhook"].endswith("/cb")
    bad = await api.http.get("/v2/ep/job-take-batch/w1?batch_size=0", headers=api.worker_headers())
    assert bad.status_code == 400 and bad.json()["field"] == "batch_size"


async def test_progress_then_result_and_late_posts_dropped(api: Api) -> None:
    (job_id,) = await submit(api)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    h = api.worker_headers()
    await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}?isStream=false",
        content='{"status": "IN_PROGRESS", "output": "50%"}',
        headers=h,
    )
    status = (await api.http.get(f"/v2/ep/status/{job_id}")).json()
    assert status["status"] == "IN_PROGRESS" and status["output"] == "50%"
    await api.http.post(f"/v2/ep/job-done/w1/{job_id}", content='{"output": "final"}', headers=h)
    late = await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}",
        content='{"status": "IN_PROGRESS", "output": "90%"}',
        headers=h,
    )
    again = await api.http.post(f"/v2/ep/job-done/w1/{job_id}", content='{"error": "x"}', headers=h)
    assert late.status_code == 200 and again.status_code == 200
    status = (await api.http.get(f"/v2/ep/status/{job_id}")).json()
    assert status["status"] == "COMPLETED" and status["output"] == "final"


async def test_malformed_worker_posts_are_400_and_change_nothing(api: Api) -> None:
    (job_id,) = await submit(api)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    for body in ("not json", "[1]"):
        reply = await api.http.post(
            f"/v2/ep/job-done/w1/{job_id}", content=body, headers=api.worker_headers()
        )
        assert reply.status_code == 400 and reply.json()["field"] == "body"
    assert (await api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_PROGRESS"


async def test_cancel_reaches_the_worker_through_job_stop(api: Api) -> None:
    (job_id,) = await submit(api)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    stop = asyncio.create_task(api.http.get("/v2/ep/job-stop/w1", headers=api.worker_headers()))
    await asyncio.sleep(0.05)
    await api.http.post(f"/v2/ep/cancel/{job_id}")
    reply = await stop
    assert reply.status_code == 200 and reply.json() == {"jobsToStop": [job_id]}
    none = await api.http.get("/v2/ep/job-stop/w1", headers=api.worker_headers())
    assert none.status_code == 204


async def test_ping_renews_and_flags_jobs_the_worker_should_drop(api: Api) -> None:
    a, b = await submit(api, 2)
    await api.http.get("/v2/ep/job-take-batch/w1?batch_size=2", headers=api.worker_headers())
    await api.http.post(f"/v2/ep/cancel/{b}")
    await api.http.get("/v2/ep/job-stop/w1", headers=api.worker_headers())  # consume
    reply = await api.http.get(
        f"/v2/ep/ping/w1?job_id={a},{b},ghost&runpod_version=1.12.0", headers=api.worker_headers()
    )
    assert reply.status_code == 200
    stops = (await api.http.get("/v2/ep/job-stop/w1", headers=api.worker_headers())).json()
    assert sorted(stops["jobsToStop"]) == sorted([b, "ghost"])
    health = (await api.http.get("/v2/ep/health")).json()
    assert health["workers"] == {"idle": 0, "running": 1, "unhealthy": 0}
    assert health["jobs"]["inProgress"] == 1 and health["jobs"]["cancelled"] == 1


async def test_unhealthy_ping_is_reported(api: Api) -> None:
    await api.http.get(
        "/v2/ep/ping/w9?status=unhealthy&check=memory&reason=low", headers=api.worker_headers()
    )
    health = (await api.http.get("/v2/ep/health")).json()
    assert health["workers"]["unhealthy"] == 1


async def test_server_health(api: Api) -> None:
    body = (await api.http.get("/health")).json()
    assert body["status"] == "ok" and body["store"] is True and body["endpoints"] == ["ep", "other"]


async def test_job_done_batch_reports_several_results(api: Api) -> None:
    a, b = await submit(api, 2)
    await api.http.get("/v2/ep/job-take-batch/w1?batch_size=2", headers=api.worker_headers())
    body = (
        f'[{{"id": "{a}", "result": {{"output": 1}}}}, {{"id": "{b}", "result": {{"error": "x"}}}}]'
    )
    reply = await api.http.post(
        "/v2/ep/job-done-batch/w1", content=body, headers=api.worker_headers()
    )
    assert reply.json() == {"ok": True, "count": 2, "refused": []}
    assert (await api.http.get(f"/v2/ep/status/{a}")).json()["output"] == 1
    assert (await api.http.get(f"/v2/ep/status/{b}")).json()["status"] == "FAILED"
    for bad, field in [
        ('{"id": "x"}', "body"),
        ('[{"result": {}}]', "[0].id"),
        ('[{"id": "x", "result": 5}]', "[0].result"),
        ("nope", "body"),
    ]:
        reply = await api.http.post(
            "/v2/ep/job-done-batch/w1", content=bad, headers=api.worker_headers()
        )
        assert reply.status_code == 400 and reply.json()["field"] == field, bad


async def test_results_too_big_for_one_post_go_one_by_one(api: Api) -> None:
    """Two results that fit the body limit alone but not together: the batch post gets a 413
    and the worker's coalescer posts them one by one."""
    a, b = await submit(api, 2)
    await api.http.get("/v2/ep/job-take-batch/w1?batch_size=2", headers=api.worker_headers())
    api.app.limits = Limits(report=1000)
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient("http://t", api.token, raw_auth=True, transport=transport) as client:
        coalescer = DoneCoalescer("ep", "w1")
        body = b'{"output": "' + b"x" * 600 + b'"}'
        await asyncio.gather(
            coalescer.done(client, a, body, False), coalescer.done(client, b, body, False)
        )
    for job_id in (a, b):
        status = (await api.http.get(f"/v2/ep/status/{job_id}")).json()
        assert status["status"] == "COMPLETED" and len(status["output"]) == 600


async def test_worker_ids_and_ping_lists_are_bounded(api: Api) -> None:
    h = api.worker_headers()
    long_id = "w" * 9000
    for path in [
        f"/v2/ep/job-take/{long_id}",
        f"/v2/ep/ping/{long_id}",
        f"/v2/ep/job-stop/{long_id}",
    ]:
        reply = await api.http.get(path, headers=h)
        assert reply.status_code == 400 and reply.json()["field"] == "worker_id", path
    many = ",".join(f"{i:036d}" for i in range(1025))
    reply = await api.http.get(f"/v2/ep/ping/w1?job_id={many}", headers=h)
    assert reply.status_code == 400 and reply.json()["field"] == "job_id"
    reply = await api.http.get(f"/v2/ep/ping/w1?job_id={'j' * 200}", headers=h)
    assert reply.status_code == 400 and reply.json()["field"] == "job_id"
    stale = ",".join(f"{i:036d}" for i in range(250))  # held by no one: all told to stop
    assert (await api.http.get(f"/v2/ep/ping/w1?job_id={stale}", headers=h)).status_code == 200
    stops = await api.http.get("/v2/ep/job-stop/w1", headers=h)
    assert len(stops.json()["jobsToStop"]) == 250


async def test_a_result_can_carry_the_next_jobs(api: Api) -> None:
    a, b, c = await submit(api, 3)
    h = api.worker_headers()
    await api.http.get("/v2/ep/job-take/w1", headers=h)  # a
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{a}?next=1", content=b'{"output": 1}', headers=h
    )
    assert [j["id"] for j in reply.json()["next"]] == [b]
    assert (await api.http.get(f"/v2/ep/status/{b}")).json()["status"] == "IN_PROGRESS"
    body = f'[{{"id": "{b}", "result": {{"output": 2}}}}]'
    reply = await api.http.post("/v2/ep/job-done-batch/w1?next=5", content=body, headers=h)
    assert [j["id"] for j in reply.json()["next"]] == [c]
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{c}?next=1", content=b'{"output": 3}', headers=h
    )
    assert reply.json() == {"ok": True, "next": []}  # nothing queued: answered at once
    plain = await api.http.post(f"/v2/ep/job-done/w1/{c}", content=b'{"output": 3}', headers=h)
    assert plain.json() == {"ok": True}  # RunPod's workers see RunPod's reply


async def test_a_result_of_many_values_is_taken(api: Api) -> None:
    (job,) = await submit(api)
    h = api.worker_headers()
    await api.http.get("/v2/ep/job-take/w1", headers=h)
    floats = b"[" + b",".join(b"0.125" for _ in range(300_000)) + b"]"  # > the /run cap
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{job}", content=b'{"output": ' + floats + b"}", headers=h
    )
    assert reply.status_code == 200
    assert len((await api.http.get(f"/v2/ep/status/{job}")).json()["output"]) == 300_000
