"""RunPod's client API: ``/v2/{endpoint}/run``, ``runsync``, ``status``, ``stream``, ..."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from anypod import errors, wire
from anypod.http import requests as rq
from anypod.http import schemas
from anypod.http.responses import json_response
from anypod.service import JobService
from anypod.settings import Settings

Endpoint = Callable[..., Awaitable[Response]]


def service(request: Request) -> JobService:
    svc: JobService = request.app.state.service
    return svc


async def require_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_keys and rq.credential(request) not in settings.api_keys:
        raise errors.Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")


router = APIRouter(
    prefix="/v2/{endpoint}",
    tags=["client"],
    dependencies=[Depends(require_key)],
    responses=schemas.ERRORS,
)


def get_and_post(path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """Register a read route for GET (JS SDK, runpod) and POST (Go SDK) alike."""

    def register(fn: Endpoint) -> Endpoint:
        for method in ("GET", "POST"):
            router.add_api_route(
                path,
                fn,
                methods=[method],
                operation_id=f"{fn.__name__}_{method.lower()}",
                **options,
            )
        return fn

    return register


@router.post(
    "/run",
    response_model=schemas.JobAccepted,
    openapi_extra=schemas.request_body(schemas.RunRequest),
)
async def run(request: Request, endpoint: str) -> Response:
    """Queue a job; returns its id at once."""
    svc, settings = service(request), request.app.state.settings
    body = await rq.json_object(request, settings.run_max_bytes)
    job = await svc.submit(endpoint, body, owner=rq.caller(request))
    return json_response({"id": job.id, "status": job.status.value})


@router.post(
    "/runsync",
    response_model=schemas.StatusObject,
    openapi_extra=schemas.request_body(schemas.RunRequest),
)
async def runsync(request: Request, endpoint: str) -> Response:
    """Queue a job and hold the request until it finishes or ``wait`` ms (default 90 s) pass."""
    svc, settings = service(request), request.app.state.settings
    wait = svc.wait_seconds(rq.int_param(request, "wait"), svc.timing.runsync_wait_ms)
    body = await rq.json_object(request, settings.runsync_max_bytes)
    job = await svc.run_sync(endpoint, body, wait, owner=rq.caller(request))
    return json_response(wire.status_object(job, svc.clock()))


@get_and_post("/status/{job_id}", response_model=schemas.StatusObject)
async def status(request: Request, endpoint: str, job_id: str) -> Response:
    svc = service(request)
    job = await svc.get(endpoint, job_id)
    return json_response(wire.status_object(job, svc.clock()))


@get_and_post("/status-sync/{job_id}", response_model=schemas.StatusObject)
async def status_sync(request: Request, endpoint: str, job_id: str) -> Response:
    """Like ``status``, but holds up to ``wait`` ms for the job to finish."""
    svc = service(request)
    wait = svc.wait_seconds(rq.int_param(request, "wait"), svc.timing.runsync_wait_ms)
    job = await svc.wait_terminal(await svc.get(endpoint, job_id), wait)
    return json_response(wire.status_object(job, svc.clock()))


@get_and_post("/stream/{job_id}", response_model=schemas.StreamReply)
async def stream(request: Request, endpoint: str, job_id: str) -> Response:
    """Chunks not returned before (drains). With ``wait`` ms, holds for the first new chunk."""
    svc = service(request)
    wait = svc.wait_seconds(rq.int_param(request, "wait"), 0)
    job, chunks = await svc.stream(endpoint, job_id, wait)
    return json_response(wire.stream_reply(job, chunks))


@router.post("/cancel/{job_id}", response_model=schemas.StatusObject)
async def cancel(request: Request, endpoint: str, job_id: str) -> Response:
    svc = service(request)
    job = await svc.cancel(endpoint, job_id)
    return json_response(wire.status_object(job, svc.clock()))


@router.post("/retry/{job_id}", response_model=schemas.JobAccepted)
async def retry(request: Request, endpoint: str, job_id: str) -> Response:
    """Re-queue a FAILED or TIMED_OUT job with the same id and input."""
    job = await service(request).retry(endpoint, job_id)
    return json_response({"id": job.id, "status": job.status.value})


@router.post("/purge-queue", response_model=schemas.PurgeReply)
@router.post("/purge", response_model=schemas.PurgeReply, include_in_schema=False)
async def purge_queue(request: Request, endpoint: str) -> Response:
    """Cancel every queued job of the endpoint; running jobs keep running."""
    removed = await service(request).purge_queue(endpoint)
    return json_response({"removed": removed, "status": "completed"})


@router.get("/health", response_model=schemas.EndpointHealth)
async def endpoint_health(request: Request, endpoint: str) -> Response:
    h = await service(request).health(endpoint)
    c = h.counts
    return json_response(
        {
            "jobs": {
                "completed": c.completed,
                "failed": c.failed,
                "inProgress": c.in_progress,
                "inQueue": c.in_queue,
                "retried": c.retried,
                "cancelled": c.cancelled,
                "timedOut": c.timed_out,
            },
            "workers": {
                "idle": h.idle_workers,
                "running": h.running_workers,
                "unhealthy": h.unhealthy_workers,
            },
        }
    )
