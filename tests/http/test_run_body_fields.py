"""``/run`` and ``/runsync`` refuse top-level keys they do not know, naming them (issue 8,
item 15); the worker protocol's bodies stay lenient, as the runpod SDK sends extra keys."""

from __future__ import annotations

import pytest

from tests.http.conftest import Api

ACCEPTED = "input, webhook, policy, s3Config"


@pytest.mark.parametrize("route", ["run", "runsync?wait=0"])
@pytest.mark.parametrize(
    ("extra", "field"),
    [({"delay": 5}, "delay"), ({"id": "mine"}, "id"), ({"Input": {}}, "Input"), ({"": 1}, "body")],
)
async def test_an_unknown_top_level_field_is_a_400_naming_it(
    api: Api, route: str, extra: dict[str, object], field: str
) -> None:
    reply = await api.http.post(f"/v2/ep/{route}", json={"input": {"x": 1}, **extra})
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == "invalid_request"
    assert body["field"] == field
    assert f"unknown field; accepted: {ACCEPTED}" in body["error"]
    health = (await api.http.get("/v2/ep/health")).json()
    assert health["jobs"]["inQueue"] == 0  # nothing accepted


async def test_every_runpod_field_is_still_accepted(api: Api) -> None:
    body = {
        "input": {"x": 1},
        "webhook": "https://example.com/hook",
        "policy": {"executionTimeout": 60_000, "ttl": 60_000, "lowPriority": False},
        "s3Config": {"bucketName": "b"},
    }
    reply = await api.http.post("/v2/ep/run", json=body)
    assert reply.status_code == 200, reply.text


async def test_a_missing_input_is_reported_before_an_unknown_field(api: Api) -> None:
    reply = await api.http.post("/v2/ep/run", json={"inptu": {}})
    assert reply.status_code == 400 and reply.json()["field"] == "input"


async def test_openapi_says_the_run_body_has_no_other_fields(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    schema = doc["components"]["schemas"]["RunRequest"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"input", "webhook", "policy", "s3Config"}


async def test_worker_bodies_keep_ignoring_extra_keys(api: Api) -> None:
    job_id = (await api.http.post("/v2/ep/run", json={"input": {}})).json()["id"]
    taken = await api.http.get("/v2/ep/job-take/w1", headers=api.worker_headers())
    assert taken.json()["id"] == job_id
    stream = await api.http.post(
        f"/v2/ep/job-stream/w1/{job_id}?isStream=true",
        content=b'{"output": 1, "sdk_extra": true}',
        headers=api.worker_headers(),
    )
    assert stream.status_code == 200, stream.text
    done = await api.http.post(
        f"/v2/ep/job-done/w1/{job_id}?isStream=false",
        content=b'{"output": {"ok": 1}, "stopPod": false, "sdk_extra": {"a": 1}}',
        headers=api.worker_headers(),
    )
    assert done.status_code == 200, done.text
    status = (await api.http.get(f"/v2/ep/status/{job_id}")).json()
    assert status["status"] == "COMPLETED" and status["output"] == {"ok": 1}
