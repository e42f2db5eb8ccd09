"""RunPod's worker protocol, one thin handler per route. Workers authenticate with the
endpoint's worker token, sent raw in ``Authorization`` as the runpod SDK does (``Bearer`` is
accepted too). Declared in ``http/routes.py``."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from anypod.http.context import Context
from anypod.http.responses import json_response, no_content
from anypod.protocols.runpod import limits, render, reports, schemas


async def job_take(ctx: Context) -> Response:
    """One job, held up to the take hold (< 90 s); 204 when none came."""
    taken = await ctx.service.take(ctx.endpoint, ctx.params["worker_id"], 1)
    return json_response(render.worker_job(taken[0])) if taken else no_content()


async def job_take_batch(ctx: Context) -> Response:
    """Up to ``batch_size`` jobs as a JSON list; 204 when none came."""
    size = min(ctx.query_as(schemas.TakeBatchQuery).batch_size, limits.MAX_TAKE_BATCH)
    taken = await ctx.service.take(ctx.endpoint, ctx.params["worker_id"], size)
    return json_response([render.worker_job(job) for job in taken]) if taken else no_content()


async def job_done(ctx: Context) -> Response:
    """The result (or, with ``status: IN_PROGRESS``, a progress update) of a job."""
    report = reports.from_job_done(ctx.body_as(schemas.JobDoneBody))
    await ctx.service.report(ctx.params["worker_id"], ctx.params["job_id"], report)
    return json_response({"ok": True})


async def job_done_batch(ctx: Context) -> Response:
    """anypod's extension: ``[{"id": job, "result": <job-done body>}, ...]`` in one post."""
    items = reports.from_job_done_batch(ctx.body_as(schemas.JobDoneBatch))
    worker = ctx.params["worker_id"]
    await asyncio.gather(*(ctx.service.report(worker, job_id, r) for job_id, r in items))
    return json_response({"ok": True, "count": len(items)})


async def job_stream(ctx: Context) -> Response:
    """One streamed chunk of a generator handler's output."""
    chunk = reports.from_chunk(ctx.body_as(schemas.StreamChunk))
    await ctx.service.stream_chunk(ctx.params["job_id"], chunk)
    return json_response({"ok": True})


async def ping(ctx: Context) -> Response:
    """Liveness; ``job_id=a,b`` lists the jobs the worker holds (their leases are renewed)."""
    worker = reports.from_ping(
        ctx.query_as(schemas.PingQuery),
        worker_id=ctx.params["worker_id"],
        endpoint=ctx.endpoint,
        now=ctx.service.clock(),
    )
    await ctx.service.ping(worker)
    return json_response({"ok": True})


async def job_stop(ctx: Context) -> Response:
    """Held until a job of this worker must stop (cancel, timeout); 204 when none."""
    stops = await ctx.service.stop_signals(ctx.params["worker_id"])
    return json_response({"jobsToStop": stops}) if stops else no_content()
