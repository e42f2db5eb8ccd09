"""The app as a whole: one route table, one middleware chain, the OpenAPI document made from
the table, offline docs, and JSON for every error the router itself answers."""

from __future__ import annotations

import re

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anypod.http.middleware import Middleware
from anypod.http.routes import ROUTES
from anypod.http.routing import Auth
from anypod.service import JobService
from tests.http.conftest import Api, Seen, app_for


async def test_openapi_documents_every_route_with_its_statuses(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.0")
    for route in ROUTES:
        if not route.in_schema:
            continue
        op = spec["paths"][route.path][route.method.lower()]
        assert {int(s) for s in op["responses"]} == set(route.responses), route.path
        names = {p["name"] for p in op["parameters"]}
        assert set(re.findall(r"\{(\w+)\}", route.path)) <= names
        if route.query is not None:
            assert set(route.query.model_fields) <= names
        scheme = {Auth.CLIENT: "ApiKey", Auth.WORKER: "WorkerToken"}.get(route.auth)
        assert op.get("security") == ([{scheme: []}] if scheme else None)
    run = spec["paths"]["/v2/{endpoint}/run"]["post"]
    ref = run["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert "input" in body["properties"] and body["required"] == ["input"]
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "WorkerToken"}
    assert "anyOf" not in str(spec) or "null" not in str(spec)  # OpenAPI 3.0: nullable


async def test_docs_work_offline(api: Api) -> None:
    page = await api.http.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assets = re.findall(r'(?:src|href)="(docs/assets/[^"]+)"', page.text)
    assert len(assets) == 3
    for asset in assets:
        reply = await api.http.get(f"/{asset}")
        assert reply.status_code == 200 and len(reply.content) > 100, asset
    missing = await api.http.get("/docs/assets/..%2f..%2fsecret")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_router_errors_are_json(api: Api) -> None:
    unknown = await api.http.get("/v3/nothing")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    wrong = await api.http.delete("/v2/ep/run")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["code"] == "method_not_allowed"
    both = await api.http.put("/v2/ep/status/x")
    assert both.status_code == 405 and both.headers["allow"] == "GET, POST"
    head = await api.http.head("/health")
    assert head.status_code == 200


class Tag:
    """A middleware that stamps every reply, to show the chain covers every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("anypod.route")
                name = getattr(getattr(route, "route", None), "name", "-")
                message["headers"] = [*message.get("headers", []), (b"x-tag", name.encode())]
            await send(message)

        await self.app(scope, receive, stamped)


async def test_middleware_wraps_every_route(service: JobService, seen: list[Seen]) -> None:
    token = await service.mint_worker_token("ep")
    app = app_for(service, seen, extra=[Middleware(Tag)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        run = await http.post("/v2/ep/run", json={"input": {}})
        assert run.headers["x-tag"] == "run"
        take = await http.get("/v2/ep/job-take/w", headers={"Authorization": token})
        assert take.headers["x-tag"] == "job_take" and take.status_code == 200
        for path, tag in [("/health", "health"), ("/docs", "docs"), ("/nope", "-")]:
            assert (await http.get(path)).headers["x-tag"] == tag
        bad = await http.post("/v2/ep/run", content=b"{")
        assert bad.status_code == 400 and bad.headers["x-tag"] == "run"


class Boom:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")


async def test_an_unhandled_error_is_a_json_500(service: JobService, seen: list[Seen]) -> None:
    app = app_for(service, seen, extra=[Middleware(Boom)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        reply = await http.get("/health")
    body = reply.json()
    assert body.pop("request_id") == reply.headers["x-request-id"]
    assert reply.status_code == 500 and body == {
        "error": "internal server error",
        "code": "internal",
    }
