"""RunPod's worker protocol: ``job-take``, ``job-take-batch``, ``job-done``, ``job-stream``,
``ping``, ``job-stop``. Workers authenticate with a per-endpoint worker token, sent raw in
``Authorization`` as the runpod SDK does (``Bearer`` is accepted too).
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from anypod import errors, wire
from anypod.http import requests as rq
from anypod.http.client_api import service
from anypod.http.responses import json_response, no_content
from anypod.store import WorkerInfo

MAX_BATCH = 256


async def require_worker_token(request: Request, endpoint: str) -> None:
    await service(request).authenticate_worker(endpoint, rq.credential(request))


router = APIRouter(
    prefix="/v2/{endpoint}", tags=["worker protocol"], dependencies=[Depends(require_worker_token)]
)


def _hold(request: Request) -> float:
    return float(request.app.state.settings.take_hold_seconds)


@router.get("/job-take/{worker_id}")
async def job_take(request: Request, endpoint: str, worker_id: str) -> Response:
    """One job, held up to the take hold (< 90 s); 204 when none came."""
    taken = await service(request).take(endpoint, worker_id, 1, _hold(request))
    if not taken:
        return no_content()
    return json_response(wire.worker_job(taken[0]))


@router.get("/job-take-batch/{worker_id}")
async def job_take_batch(request: Request, endpoint: str, worker_id: str) -> Response:
    """Up to ``batch_size`` jobs as a JSON list; 204 when none came."""
    size = min(rq.int_param(request, "batch_size", minimum=1) or 1, MAX_BATCH)
    taken = await service(request).take(endpoint, worker_id, size, _hold(request))
    if not taken:
        return no_content()
    return json_response([wire.worker_job(job) for job in taken])


@router.post("/job-done/{worker_id}/{job_id}")
async def job_done(request: Request, endpoint: str, worker_id: str, job_id: str) -> Response:
    """The result (or, with ``status: IN_PROGRESS``, a progress update) of a job."""
    body = await rq.raw_json(request, request.app.state.settings.result_max_bytes)
    await service(request).report(worker_id, job_id, body)
    return json_response({"ok": True})


@router.post("/job-done-batch/{worker_id}")
async def job_done_batch(request: Request, endpoint: str, worker_id: str) -> Response:
    """anypod's extension: ``[{"id": job, "result": <job-done body>}, ...]`` in one post."""
    body = await rq.raw_json(request, request.app.state.settings.result_max_bytes)
    items = body if isinstance(body, list) else None
    if items is None or not all(
        isinstance(i, dict) and isinstance(i.get("id"), str) for i in items
    ):
        raise errors.InvalidRequest("expected a list of {id, result} objects", field="body")
    svc = service(request)
    await asyncio.gather(*(svc.report(worker_id, i["id"], i.get("result")) for i in items))
    return json_response({"ok": True, "count": len(items)})


@router.post("/job-stream/{worker_id}/{job_id}")
async def job_stream(request: Request, endpoint: str, worker_id: str, job_id: str) -> Response:
    """One streamed chunk of a generator handler's output."""
    body = await rq.raw_json(request, request.app.state.settings.result_max_bytes)
    await service(request).stream_chunk(job_id, body)
    return json_response({"ok": True})


@router.get("/ping/{worker_id}")
async def ping(request: Request, endpoint: str, worker_id: str) -> Response:
    """Liveness; ``job_id=a,b`` lists the jobs the worker holds (their leases are renewed)."""
    q = request.query_params
    ids = tuple(j for j in q.get("job_id", "").split(",") if j)
    unhealthy = None
    if q.get("status") == "unhealthy":
        unhealthy = f"{q.get('check', '?')}: {q.get('reason', '')}"[:300]
    svc = service(request)
    await svc.ping(
        WorkerInfo(
            id=worker_id,
            endpoint=endpoint,
            last_seen=svc.clock(),
            job_ids=ids,
            gpu=q.get("gpu"),
            version=q.get("runpod_version"),
            unhealthy=unhealthy,
        )
    )
    return json_response({"ok": True})


@router.get("/job-stop/{worker_id}")
async def job_stop(request: Request, endpoint: str, worker_id: str) -> Response:
    """Held until a job of this worker must stop (cancel, timeout); 204 when none."""
    stops = await service(request).stop_signals(worker_id, _hold(request))
    if not stops:
        return no_content()
    return Response(orjson.dumps({"jobsToStop": stops}), media_type="application/json")
