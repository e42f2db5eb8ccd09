"""The SDK over httpx's MockTransport: replies become the exception they stand for."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from anypod import AsyncClient, Client, errors

Handler = Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any) -> Handler:
    return lambda request: httpx.Response(status, content=orjson.dumps(body))


@pytest.mark.parametrize(
    ("status", "body", "raised"),
    [
        (404, {"error": "no job", "code": "job_not_found"}, errors.JobNotFound),
        (404, {"error": "no endpoint", "code": "endpoint_not_found"}, errors.EndpointNotFound),
        (404, {"error": "gone"}, errors.NotFound),  # RunPod sends no code: by status
        (401, {"error": "who?", "code": "unauthorized"}, errors.Unauthorized),
        (409, {"error": "state", "code": "conflict"}, errors.Conflict),
        (413, {"error": "big", "code": "payload_too_large"}, errors.PayloadTooLarge),
        (503, {"error": "down", "code": "unavailable"}, errors.StoreUnavailable),
        (500, {"error": "internal server error", "code": "internal"}, errors.ClientError),
        (502, "<html>bad gateway</html>", errors.ClientError),
    ],
)
def test_error_replies_raise_their_class(status: int, body: Any, raised: type[Exception]) -> None:
    with Client("http://t", transport=httpx.MockTransport(reply(status, body))) as client:
        with pytest.raises(raised) as caught:
            client.status("ep", "j")
    exc = caught.value
    assert isinstance(exc, errors.ClientError)  # every error reply is one, as before
    assert raised is errors.ClientError or type(exc).__mro__[1] is raised  # and exactly this
    assert exc.status_code == status and exc.body == body
    assert "GET /v2/ep/status/j" in str(caught.value)


def test_invalid_request_keeps_the_field() -> None:
    body = {"error": "policy.ttl: too small", "code": "invalid_request", "field": "policy.ttl"}
    with Client("http://t/v2", transport=httpx.MockTransport(reply(400, body))) as client:
        with pytest.raises(errors.InvalidRequest) as caught:
            client.run("ep", {}, policy={"ttl": 1})
    assert caught.value.field == "policy.ttl"


async def test_the_async_client_raises_the_same() -> None:
    transport = httpx.MockTransport(reply(404, {"error": "x", "code": "job_not_found"}))
    async with AsyncClient("http://t", transport=transport) as client:
        with pytest.raises(errors.JobNotFound):
            await client.cancel("ep", "j")


def test_paths_quote_their_parts() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, content=b"{}")

    with Client("http://t", "k", transport=httpx.MockTransport(record)) as client:
        client.status("ep", "../x?y")
    assert seen == ["/v2/ep/status/..%2Fx%3Fy"]


def test_async_client_has_every_method_of_the_sync_one() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, asynchronous = public(Client), public(AsyncClient)
    for name, signature in sync.items():
        assert name in asynchronous, name
        assert list(asynchronous[name].parameters) == list(signature.parameters), name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
