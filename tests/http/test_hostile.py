"""Bad input of every kind gets a 4xx JSON error naming the field; odd but valid input is kept
exactly. (Every reply here is also checked against the route table by the ``api`` fixture;
bad submissions are in test_client_api.py.)"""

from __future__ import annotations

import orjson
import pytest

from tests.http.conftest import Api


async def test_odd_but_valid_input_round_trips_exactly(api: Api) -> None:
    odd = {"nul": "a\u0000b", "emoji": "\U0001f600", "deep": [[[[[1]]]]], "list": list(range(300))}
    job_id = (await api.http.post("/v2/ep/run", json={"input": odd})).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json() == {"id": job_id, "input": odd}


async def test_a_declared_length_over_the_limit_is_refused_unread(api: Api) -> None:
    reply = await api.http.post(
        "/v2/ep/run", content=b"{}", headers={"Content-Length": "999999999"}
    )
    assert reply.status_code == 413 and reply.json()["field"] == "body"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v2/ep/job-take-batch/w1?batch_size=0", "batch_size"),
        ("/v2/ep/job-take-batch/w1?batch_size=x", "batch_size"),
        ("/v2/ep/ping/w1?gpu=a%00b", "gpu"),
        ("/v2/ep/ping/w%00", "worker_id"),
    ],
)
async def test_bad_worker_queries(api: Api, path: str, field: str) -> None:
    reply = await api.http.get(path, headers=api.worker_headers())
    assert reply.status_code == 400 and reply.json()["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"output": ' + b"[" * 300 + b"]" * 300 + b"}", "output"),
        (b'{"output": 1e999}', "body"),
        (b'{"stopPod": "maybe"}', "stopPod"),
        (b"", "body"),
    ],
)
async def test_bad_results_change_nothing(api: Api, body: bytes, field: str) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    reply = await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}", content=body, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == field, reply.text
    assert (await api.http.get(f"/v2/ep/status/{job_id}")).json()["status"] == "IN_PROGRESS"


async def test_odd_ids_are_404_json(api: Api) -> None:
    for job_id in ("..%2F..%2Fetc", "\u00e9t\u00e9", "x" * 2000):
        reply = await api.http.get(f"/v2/ep/status/{job_id}")
        assert reply.status_code == 404, job_id
        assert reply.json()["code"] in ("job_not_found", "not_found"), job_id  # no route


async def test_a_huge_batch_of_results_is_refused(api: Api) -> None:
    items = orjson.dumps([{"id": f"j{i}", "result": {}} for i in range(1500)])
    api.app.limits = type(api.app.limits)(report=len(items) + 1)
    reply = await api.http.post(
        "/v2/ep/job-done-batch/w1", content=items, headers=api.worker_headers()
    )
    assert reply.status_code == 400 and reply.json()["field"] == "body"


async def test_nul_in_ids_and_text_is_400_naming_the_field(api: Api) -> None:
    """PostgreSQL's text columns cannot hold NUL: refused at the edge, on every store."""
    status = await api.http.get("/v2/ep/status/a%00b")
    assert status.status_code == 400 and status.json()["field"] == "job_id"
    hook = await api.http.post("/v2/ep/run", json={"input": {}, "webhook": "http://a\u0000b/x"})
    assert hook.status_code == 400 and hook.json()["field"] == "webhook"
    batch = await api.http.post(
        "/v2/ep/job-done-batch/w1",
        json=[{"id": "a\u0000b", "result": {}}],
        headers=api.worker_headers(),
    )
    assert batch.status_code == 400 and batch.json()["field"] == "[0].id"


async def test_long_ping_labels_are_kept_short(api: Api) -> None:
    reply = await api.http.get("/v2/ep/ping/w1?gpu=" + "g" * 5000, headers=api.worker_headers())
    assert reply.status_code == 200
    (worker,) = await api.service.store.workers("ep", 0)
    assert worker.gpu == "g" * 300


async def test_head_serves_only_what_changes_nothing(api: Api) -> None:
    assert (await api.http.head("/health")).status_code == 200
    taken = await api.http.head("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.status_code == 405  # a HEAD must not take a job
