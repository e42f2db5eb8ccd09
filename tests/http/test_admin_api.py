"""The admin API in process: keys, tokens, usage and audit through HTTP, every reply checked
against the route table, and bad input of every kind answered 4xx naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.http.conftest import Api

ADMIN = "/admin/v1"
DEEP: object = 1
for _ in range(200):
    DEEP = [DEEP]


async def admin_key(api: Api) -> dict[str, str]:
    """The first key, made while the API is still open (development mode); from then on every
    call needs a key."""
    made = await api.http.post(f"{ADMIN}/keys", json={"name": "ops", "scopes": ["admin"]})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def test_keys_lifecycle(api: Api) -> None:
    auth = await admin_key(api)
    assert (await api.http.get(f"{ADMIN}/keys")).status_code == 401  # no longer open
    made = await api.http.post(
        f"{ADMIN}/keys",
        json={
            "name": "team",
            "tenant": "acme",
            "endpoints": ["ep"],
            "expires": "30d",
            "rate": "20/s",
            "concurrency": 5,
            "quota": "jobs=100/day",
        },
        headers=auth,
    )
    key = made.json()
    assert key["state"] == "active" and key["limits"]["rate"] == 20.0
    assert key["limits"]["quotas"] == ["jobs=100/day"] and key["endpoints"] == ["ep"]
    listed = (await api.http.get(f"{ADMIN}/keys", headers=auth)).json()["keys"]
    assert [k["name"] for k in listed] == ["ops", "team"] and all("key" not in k for k in listed)
    acme = (await api.http.get(f"{ADMIN}/keys?tenant=acme", headers=auth)).json()["keys"]
    assert [k["id"] for k in acme] == [key["id"]]
    rotated = (await api.http.post(f"{ADMIN}/keys/{key['id']}/rotate", headers=auth)).json()
    assert rotated["key"] != key["key"] and rotated["rotated_at"] is not None
    revoked = await api.http.delete(f"{ADMIN}/keys/{key['id']}", headers=auth)
    assert revoked.json()["state"] == "revoked"
    again = await api.http.delete(f"{ADMIN}/keys/{key['id']}", headers=auth)
    assert again.status_code == 409
    assert (
        await api.http.post(f"{ADMIN}/keys/{key['id']}/rotate", headers=auth)
    ).status_code == 409
    assert (await api.http.get(f"{ADMIN}/keys/nope", headers=auth)).status_code == 404
    actions = [
        e["action"] for e in (await api.http.get(f"{ADMIN}/audit", headers=auth)).json()["entries"]
    ]
    assert actions[:4] == ["admin.audit", "admin.refused", "admin.refused", "admin.refused"]
    assert actions[4:7] == ["key.revoke", "key.rotate", "admin.keys.list"]


async def test_tokens_through_the_admin_api(api: Api) -> None:
    auth = await admin_key(api)
    made = await api.http.post(
        f"{ADMIN}/tokens", json={"endpoint": "ep", "name": "box"}, headers=auth
    )
    token = made.json()
    assert made.status_code == 201 and token["token"].startswith(f"apw_{token['id']}_")
    worker = {"Authorization": token["token"]}
    assert (await api.http.get("/v2/ep/ping/w1", headers=worker)).status_code == 200
    assert (await api.http.get("/v2/other/ping/w1", headers=worker)).status_code == 401
    listed = (await api.http.get(f"{ADMIN}/tokens?endpoint=ep", headers=auth)).json()["tokens"]
    assert token["id"] in [t["id"] for t in listed]
    assert (await api.http.delete(f"{ADMIN}/tokens/{token['id']}", headers=auth)).json() == {
        "id": token["id"],
        "state": "revoked",
    }
    assert (await api.http.get("/v2/ep/ping/w1", headers=worker)).status_code == 401
    assert (await api.http.delete(f"{ADMIN}/tokens/{token['id']}", headers=auth)).status_code == 404
    unknown = await api.http.post(f"{ADMIN}/tokens", json={"endpoint": "nope"}, headers=auth)
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"{ADMIN}/usage?limit=0", "limit"),
        (f"{ADMIN}/usage?limit=x", "limit"),
        (f"{ADMIN}/usage?since=yesterday", "since"),
        (f"{ADMIN}/usage?key=a%00b", "key"),
        (f"{ADMIN}/usage?colour=red", "colour"),
        (f"{ADMIN}/audit?before=-1", "before"),
        (f"{ADMIN}/audit?before=9223372036854775808", "before"),
        (f"{ADMIN}/audit?since=nan", "since"),
        (f"{ADMIN}/audit?since=1e20", "since"),
        (f"{ADMIN}/usage?since=inf", "since"),
        (f"{ADMIN}/usage?since=-1e20", "since"),
        (f"{ADMIN}/audit?since=soon", "since"),
        (f"{ADMIN}/audit?limit=100000", "limit"),
        (f"{ADMIN}/keys?tenant={'t' * 65}", "tenant"),
        (f"{ADMIN}/keys/a%00b", "key_id"),
    ],
)
async def test_bad_admin_queries_are_400_naming_the_field(api: Api, path: str, field: str) -> None:
    reply = await api.http.get(path, headers=await admin_key(api))
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"].split(".")[0] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": "admin"}, "scopes"),
        ({"name": "x", "scopes": ["run"] * 9}, "scopes"),
        ({"name": "x", "endpoints": ["e"] * 65}, "endpoints"),
        ({"name": "x", "concurrency": "5"}, "concurrency"),
        ({"name": "x", "concurrency": 2**63}, "concurrency"),
        ({"name": "x", "expires": "100000000w"}, "expires"),
        ({"name": "x", "expires": "99999999999999999999d"}, "expires"),
        ({"name": "x", "rate": "9" * 400 + "/s"}, "rate"),
        ({"name": "x", "rate": "0.0000000001/h"}, "rate"),
        ({"name": "x", "quota": "jobs=\u0661\u0662/day"}, "quota"),
        ({"name": "x", "rate": "5/s", "burst": 1e300}, "burst"),
        ({"name": "x", "burst": 5}, "burst"),  # a burst needs a rate
        ({"name": "x", "rate": "0/s"}, "rate"),
        ({"name": "x", "quota": "gpu_seconds=1/year"}, "quota"),
        ({"name": "x", "tenant": "a b"}, "tenant"),
        ({"name": "x" * 65}, "name"),
        ({}, "name"),
        ([1, 2], "body"),
        ({"name": {"deep": DEEP}}, "name"),
    ],
)
async def test_bad_key_bodies_are_400_naming_the_field(api: Api, body: Any, field: str) -> None:
    reply = await api.http.post(f"{ADMIN}/keys", json=body, headers=await admin_key(api))
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"].split(".")[0] == field


@pytest.mark.parametrize("name", ["a\u0000", "a\u001b[2Jb", "a\nfake row", "x" * 65])
async def test_token_names_are_plain_text(api: Api, name: str) -> None:
    body = {"endpoint": "ep", "name": name}
    reply = await api.http.post(f"{ADMIN}/tokens", json=body, headers=await admin_key(api))
    assert reply.status_code == 400 and reply.json()["field"] == "name", reply.text


async def test_refused_admin_calls_are_audited(api: Api) -> None:
    auth = await admin_key(api)
    assert (await api.http.delete(f"{ADMIN}/keys/{'k' * 5000}", headers=auth)).status_code == 404
    reply = await api.http.get(f"{ADMIN}/keys/{'k' * 5000}", headers=auth)
    assert len(reply.text) < 400  # the id is not echoed in full
    entries = (await api.http.get(f"{ADMIN}/audit", headers=auth)).json()["entries"]
    refused = [e for e in entries if e["action"] == "admin.refused"]
    assert len(refused) == 2 and '"status":404' in refused[0]["detail"]


async def test_client_keys_and_worker_tokens_get_nothing_here(api: Api) -> None:
    auth = await admin_key(api)
    made = await api.http.post(f"{ADMIN}/keys", json={"name": "client"}, headers=auth)
    client = {"Authorization": f"Bearer {made.json()['key']}"}
    for method, path in (("GET", "keys"), ("GET", "usage"), ("GET", "audit"), ("POST", "keys")):
        reply = await api.http.request(
            method, f"{ADMIN}/{path}", headers=client, json={"name": "y"}
        )
        assert reply.status_code == 403, (path, reply.text)
        assert "'admin' scope" in reply.json()["error"]
    assert (await api.http.get(f"{ADMIN}/keys", headers=api.worker_headers())).status_code == 401
    entries = (await api.http.get(f"{ADMIN}/audit?action=admin.forbidden", headers=auth)).json()
    assert len(entries["entries"]) == 4
