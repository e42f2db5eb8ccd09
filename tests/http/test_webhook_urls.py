"""A webhook URL is checked in full when the job is submitted: a URL no delivery could use is a
400 naming ``webhook`` (it used to be accepted, then re-claimed every 20 s forever)."""

from __future__ import annotations

import pytest

from tests.http.conftest import Api

REFUSED = [
    "http://hook.example/a\nb",
    "http://hook.example/a\r\nX-Injected: 1",
    "http://hook.example/\u0000",
    "http://hook.example/\t",
    "http://hook.example/\x1b",
    "http://hook.example/\u0085",
    "http://hook.example/a b",
    "http://hook example/",
    "http://hook.example/\u202e",
    "http:///cb",
    "http://:8080/cb",
    "http://hook.example:0/",
    "http://hook.example:/",
    "http://hook.example:65536/",
    "http://hook.example:http/",
    "http://user@hook.example/",
    "http://hook.example@evil.example/",
    "http://hook.example\\@evil.example/",
    "http://[fe80::1%25eth0]/",
    "http://0x7f.1/",
    "http://2130706433/",
    "http://a..b/",
    "ftp://hook.example/",
    "file:///etc/passwd",
    "ws://hook.example/",
    "hook.example/cb",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_unusable_webhook_urls_are_400_naming_the_field(api: Api, url: str) -> None:
    for route in ("/v2/ep/run", "/v2/ep/runsync?wait=1000"):
        reply = await api.http.post(route, json={"input": {}, "webhook": url})
        assert reply.status_code == 400, reply.text
        assert reply.json()["field"] == "webhook" and reply.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/cb?a=1", "http://127.0.0.1:8080/cb", "http://[2606:4700::1]/x"],
)
async def test_usable_webhook_urls_are_accepted_and_kept(api: Api, url: str) -> None:
    reply = await api.http.post("/v2/ep/run", json={"input": {}, "webhook": url})
    assert reply.status_code == 200, reply.text
    job = await api.service.store.get(reply.json()["id"])
    assert job is not None and job.webhook == url
