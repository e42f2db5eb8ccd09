"""The route table: every route of the API, in one list (:data:`ROUTES`). The app dispatches
with it and ``/openapi.json`` is generated from it; :class:`routing.Route` says what each
field means. A later wire format (OpenAI's, say) adds its routes here, beside RunPod's.

Client routes take an API key, worker routes the endpoint's worker token. Read routes answer
GET (the JS SDK, runpod) and POST (the Go SDK) alike.
"""

from __future__ import annotations

from pydantic import BaseModel

from anypod.http import admin_api, client_api, system, worker_api
from anypod.http.routing import Auth, Handler, Route
from anypod.keys import Scope
from anypod.protocols import admin as ad
from anypod.protocols.runpod import paths
from anypod.protocols.runpod import schemas as rp


class ErrorReply(BaseModel):
    """Every error reply (:mod:`anypod.protocols.errors`)."""

    error: str
    code: str
    field: str | None = None
    request_id: str | None = None
    limit: str | None = None  # 429: which limit (rate, concurrency, quota:jobs, ...)
    retry_after: float | None = None  # 429: seconds


Replies = dict[int, type[BaseModel] | None]


def replies(ok: Replies, *statuses: int) -> Replies:
    """``ok`` plus an :class:`ErrorReply` for each error status the route can answer."""
    return {**ok, **{status: ErrorReply for status in statuses}}


# Besides its own, every API route can answer: a bad path parameter such as a NUL in an id
# (400), a bad credential (401), an unknown endpoint or job (404), the store away (503).
COMMON = (400, 401, 404, 503)
# and a client route: a key without the route's scope (403), over a limit of the key (429)
CLIENT_COMMON = (*COMMON, 403, 429)


def client(
    method: str,
    path: str,
    handler: Handler,
    summary: str,
    ok: Replies,
    *statuses: int,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_limit: str = "run",
    operation_id: str | None = None,
    in_schema: bool = True,
    scope: Scope = Scope.READ,
) -> Route:
    return Route(
        method=method,
        path=path,
        handler=handler,
        auth=Auth.CLIENT,
        scope=scope,
        summary=summary,
        tag="client",
        responses=replies(ok, *statuses, *CLIENT_COMMON),
        query=query,
        body=body,
        body_limit=body_limit,
        operation_id=operation_id,
        in_schema=in_schema,
    )


def admin_route(
    method: str,
    path: str,
    handler: Handler,
    summary: str,
    ok: Replies,
    *statuses: int,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
) -> Route:
    return Route(
        method=method,
        path=path,
        handler=handler,
        auth=Auth.CLIENT,
        scope=Scope.ADMIN,
        summary=summary,
        tag="admin",
        responses=replies(ok, *statuses, *CLIENT_COMMON),
        query=query,
        body=body,
    )


ADMIN = "/admin/v1"


def read(
    path: str, handler: Handler, summary: str, ok: type[BaseModel], *, wait: bool
) -> list[Route]:
    """A read route, for GET and POST alike; with ``wait``, it takes a ``wait`` parameter."""
    return [
        client(
            method,
            path,
            handler,
            summary,
            {200: ok},
            *((400,) if wait else ()),
            query=rp.WaitQuery if wait else None,
            operation_id=f"{handler.__name__}_{method.lower()}",
        )
        for method in ("GET", "POST")
    ]


def worker(
    method: str,
    path: str,
    handler: Handler,
    summary: str,
    ok: Replies,
    *statuses: int,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
) -> Route:
    return Route(
        method=method,
        path=path,
        handler=handler,
        auth=Auth.WORKER,
        summary=summary,
        tag="worker protocol",
        responses=replies(ok, *statuses, *COMMON, 429),
        query=query,
        body=body,
        body_limit="report",
    )


def open_route(
    path: str, handler: Handler, summary: str, ok: Replies, *statuses: int, in_schema: bool = False
) -> Route:
    return Route(
        method="GET",
        path=path,
        handler=handler,
        auth=Auth.NONE,
        summary=summary,
        tag="system",
        responses=replies(ok, *statuses),
        in_schema=in_schema,
    )


ROUTES: list[Route] = [
    # --- system ---
    open_route(
        "/health",
        system.health,
        "Server health",
        {200: system.ServerHealthReply},
        503,
        in_schema=True,
    ),
    open_route("/openapi.json", system.openapi, "OpenAPI document", {200: None}),
    open_route("/docs", system.docs, "API reference (Swagger UI)", {200: None}),
    open_route("/docs/assets/{name}", system.docs_asset, "Docs assets", {200: None}, 404),
    # --- RunPod client API ---
    client(
        "POST",
        paths.RUN,
        client_api.run,
        "Queue a job",
        {200: rp.JobAccepted},
        400,
        413,
        body=rp.RunRequest,
        body_limit="run",
        scope=Scope.RUN,
    ),
    client(
        "POST",
        paths.RUNSYNC,
        client_api.runsync,
        "Run a job and wait for it",
        {200: rp.StatusObject},
        400,
        413,
        query=rp.WaitQuery,
        body=rp.RunRequest,
        body_limit="runsync",
        scope=Scope.RUN,
    ),
    *read(paths.STATUS, client_api.status, "Job status", rp.StatusObject, wait=False),
    *read(
        paths.STATUS_SYNC, client_api.status_sync, "Job status, waiting", rp.StatusObject, wait=True
    ),
    *read(paths.STREAM, client_api.stream, "Drain streamed output", rp.StreamReply, wait=True),
    client(
        "POST",
        paths.CANCEL,
        client_api.cancel,
        "Cancel a job",
        {200: rp.StatusObject},
        scope=Scope.CANCEL,
    ),
    client(
        "POST",
        paths.RETRY,
        client_api.retry,
        "Retry a failed job",
        {200: rp.JobAccepted},
        409,
        scope=Scope.CANCEL,
    ),
    client(
        "POST",
        paths.PURGE_QUEUE,
        client_api.purge_queue,
        "Cancel queued jobs",
        {200: rp.PurgeReply},
        scope=Scope.CANCEL,
    ),
    client(
        "POST",
        paths.PURGE,
        client_api.purge_queue,
        "Cancel queued jobs (alias)",
        {200: rp.PurgeReply},
        operation_id="purge_queue_alias",
        in_schema=False,
        scope=Scope.CANCEL,
    ),
    client(
        "GET",
        paths.HEALTH,
        client_api.endpoint_health,
        "Endpoint health",
        {200: rp.EndpointHealth},
    ),
    # --- anypod admin API ---
    admin_route(
        "GET",
        f"{ADMIN}/keys",
        admin_api.list_keys,
        "List API keys",
        {200: ad.KeyList},
        query=ad.KeysQuery,
    ),
    admin_route(
        "POST",
        f"{ADMIN}/keys",
        admin_api.create_key,
        "Create an API key",
        {201: ad.NewKeyReply},
        409,
        body=ad.KeyCreate,
    ),
    admin_route(
        "GET", f"{ADMIN}/keys/{{key_id}}", admin_api.get_key, "An API key", {200: ad.KeyReply}
    ),
    admin_route(
        "DELETE",
        f"{ADMIN}/keys/{{key_id}}",
        admin_api.revoke_key,
        "Revoke an API key",
        {200: ad.KeyReply},
        409,
    ),
    admin_route(
        "POST",
        f"{ADMIN}/keys/{{key_id}}/rotate",
        admin_api.rotate_key,
        "Rotate an API key's secret",
        {200: ad.NewKeyReply},
        409,
    ),
    admin_route(
        "GET",
        f"{ADMIN}/tokens",
        admin_api.list_tokens,
        "List worker tokens",
        {200: ad.TokenList},
        query=ad.TokensQuery,
    ),
    admin_route(
        "POST",
        f"{ADMIN}/tokens",
        admin_api.create_token,
        "Create a worker token",
        {201: ad.NewTokenReply},
        body=ad.TokenCreate,
    ),
    admin_route(
        "DELETE",
        f"{ADMIN}/tokens/{{token_id}}",
        admin_api.revoke_token,
        "Revoke a worker token",
        {200: ad.TokenRevoked},
    ),
    admin_route(
        "GET",
        f"{ADMIN}/usage",
        admin_api.usage,
        "Usage per key, endpoint and day",
        {200: ad.UsageReply},
        query=ad.UsageQueryModel,
    ),
    admin_route(
        "GET",
        f"{ADMIN}/audit",
        admin_api.audit_log,
        "The audit log",
        {200: ad.AuditReply},
        query=ad.AuditQueryModel,
    ),
    # --- RunPod worker protocol ---
    worker(
        "GET",
        paths.JOB_TAKE,
        worker_api.job_take,
        "Take a job",
        {200: rp.WorkerJob, 204: None},
        400,
        query=rp.TakeQuery,
    ),
    worker(
        "GET",
        paths.JOB_TAKE_BATCH,
        worker_api.job_take_batch,
        "Take jobs",
        {200: rp.WorkerJobs, 204: None},
        400,
        query=rp.TakeBatchQuery,
    ),
    worker(
        "POST",
        paths.JOB_DONE,
        worker_api.job_done,
        "Report a result or progress",
        {200: rp.DoneReply},
        400,
        409,
        413,
        query=rp.ResultQuery,
        body=rp.JobDoneBody,
    ),
    worker(
        "POST",
        paths.JOB_DONE_BATCH,
        worker_api.job_done_batch,
        "Report several results",
        {200: rp.DoneBatchReply},
        400,
        413,
        query=rp.NextQuery,
        body=rp.JobDoneBatch,
    ),
    worker(
        "POST",
        paths.JOB_STREAM,
        worker_api.job_stream,
        "Post a streamed chunk",
        {200: rp.Ok},
        400,
        409,
        413,
        query=rp.ResultQuery,
        body=rp.StreamChunk,
    ),
    worker(
        "GET",
        paths.PING,
        worker_api.ping,
        "Heartbeat; renews leases",
        {200: rp.Ok},
        400,
        query=rp.PingQuery,
    ),
    worker(
        "POST",
        paths.JOB_RELEASE,
        worker_api.job_release,
        "Hand taken jobs back",
        {200: rp.Released},
        400,
        413,
        body=rp.ReleaseBody,
    ),
    worker(
        "GET",
        paths.JOB_STOP,
        worker_api.job_stop,
        "Wait for jobs to stop",
        {200: rp.JobsToStop, 204: None},
    ),
]
