"""Lease fencing: a worker token acts only on its endpoint's jobs, and a report only on the
job its worker holds. Everything refused changes nothing."""

from __future__ import annotations

from tests.http.conftest import Api
from tests.http.test_worker_api import submit


async def status(api: Api, job_id: str, endpoint: str = "ep") -> dict[str, object]:
    reply = await api.http.get(f"/v2/{endpoint}/status/{job_id}")
    body: dict[str, object] = reply.json()
    return body


async def test_a_token_for_one_endpoint_cannot_touch_anothers_jobs(api: Api) -> None:
    other = {"Authorization": await api.service.mint_worker_token("other")}
    (queued,) = await submit(api)
    (running,) = await submit(api)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())  # takes `queued`
    for job_id in (queued, running):
        for path, body in [
            (f"/v2/other/job-done/x/{job_id}", b'{"output": "forged"}'),
            (f"/v2/other/job-done/x/{job_id}", b'{"status": "IN_PROGRESS", "output": 1}'),
            (f"/v2/other/job-stream/x/{job_id}", b'{"output": "forged"}'),
        ]:
            reply = await api.http.post(path, content=body, headers=other)
            assert reply.status_code == 404 and reply.json()["code"] == "job_not_found", path
    assert (await status(api, queued))["status"] == "IN_PROGRESS"
    assert (await status(api, running))["status"] == "IN_QUEUE"
    assert "output" not in await status(api, queued)


async def test_within_an_endpoint_only_the_holder_reports(api: Api) -> None:
    a, b = await submit(api, 2)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())  # w1 holds a
    h = api.worker_headers()
    for path, body in [
        (f"/v2/ep/job-done/w2/{a}", b'{"output": "forged"}'),
        (f"/v2/ep/job-done/w2/{a}", b'{"status": "IN_PROGRESS", "output": 1}'),
        (f"/v2/ep/job-stream/w2/{a}", b'{"output": 1}'),
        (f"/v2/ep/job-done/w1/{b}", b'{"output": "not taken"}'),  # queued: held by no one
    ]:
        reply = await api.http.post(path, content=body, headers=h)
        assert reply.status_code == 409 and reply.json()["code"] == "conflict", path
    assert (await status(api, a))["status"] == "IN_PROGRESS"
    assert (await status(api, b))["status"] == "IN_QUEUE"
    done = await api.http.post(f"/v2/ep/job-done/w1/{a}", content=b'{"output": 2}', headers=h)
    again = await api.http.post(f"/v2/ep/job-done/w1/{a}", content=b'{"output": 3}', headers=h)
    assert done.status_code == again.status_code == 200  # a repeated post is harmless
    assert (await status(api, a))["output"] == 2


async def test_job_done_batch_answers_per_item(api: Api) -> None:
    a, b = await submit(api, 2)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())  # w1 holds a only
    body = (
        f'[{{"id": "{a}", "result": {{"output": 1}}}}, {{"id": "{b}", "result": {{"output": 2}}}},'
    )
    body += '{"id": "ghost", "result": {"output": 3}}]'
    reply = await api.http.post(
        "/v2/ep/job-done-batch/w1", content=body, headers=api.worker_headers()
    )
    answer = reply.json()
    assert reply.status_code == 200 and answer["ok"] is False and answer["count"] == 1
    assert [(r["id"], r["status"]) for r in answer["refused"]] == [(b, 409), ("ghost", 404)]
    assert (await status(api, a))["output"] == 1
    assert (await status(api, b))["status"] == "IN_QUEUE"


async def test_a_worker_id_on_another_endpoint_is_another_worker(api: Api) -> None:
    other = {"Authorization": await api.service.mint_worker_token("other")}
    (job,) = await submit(api)
    h = api.worker_headers()
    await api.http.get("/v2/ep/job-take/w1", headers=h)
    assert (await api.http.get(f"/v2/ep/ping/w1?job_id={job}", headers=h)).status_code == 200
    same_id = await api.http.get(f"/v2/other/ping/w1?job_id={job}", headers=other)
    assert same_id.status_code == 200  # its own worker: it renews nothing of ep's
    seen = await api.service.store.workers(None, 0)
    assert sorted(w.endpoint for w in seen) == ["ep", "other"]
    stops = await api.http.get("/v2/other/job-stop/w1", headers=other)
    assert stops.json() == {"jobsToStop": [job]}  # "not yours": told to drop it
    assert (await api.http.get(f"/v2/ep/status/{job}")).json()["status"] == "IN_PROGRESS"


async def test_job_stop_is_per_endpoint(api: Api) -> None:
    other = {"Authorization": await api.service.mint_worker_token("other")}
    (job,) = await submit(api)
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    await api.http.post(f"/v2/ep/cancel/{job}")
    assert (await api.http.get("/v2/other/job-stop/w1", headers=other)).status_code == 204
    reply = await api.http.get("/v2/ep/job-stop/w1", headers=api.worker_headers())
    assert reply.json() == {"jobsToStop": [job]}


async def test_job_release_hands_back_only_the_workers_own_jobs(api: Api) -> None:
    a, b = await submit(api, 2)
    h = api.worker_headers()
    await api.http.get("/v2/ep/job-take/w1", headers=h)  # a
    await api.http.get("/v2/ep/job-take/w2", headers=h)  # b
    reply = await api.http.post("/v2/ep/job-release/w1", json={"ids": [a, b, "ghost"]}, headers=h)
    assert reply.status_code == 200 and reply.json() == {"released": [a]}
    back = await status(api, a)
    assert back["status"] == "IN_QUEUE" and "workerId" not in back
    assert (await status(api, b))["status"] == "IN_PROGRESS"
    other = {"Authorization": await api.service.mint_worker_token("other")}
    reply = await api.http.post("/v2/other/job-release/w2", json={"ids": [b]}, headers=other)
    assert reply.json() == {"released": []}
    bad = await api.http.post("/v2/ep/job-release/w1", json={"ids": "x"}, headers=h)
    assert bad.status_code == 400 and bad.json()["field"] == "ids"
