"""RunPod's client API, one thin handler per route: read the validated request, make one
service call, render the reply. Declared in ``http/routes.py``."""

from __future__ import annotations

from starlette.responses import Response

from anypod.http.context import Context
from anypod.http.responses import json_response
from anypod.protocols.runpod import render, schemas, submission


async def run(ctx: Context) -> Response:
    """Queue a job; returns its id at once."""
    body = submission.from_run(ctx.body_as(schemas.RunRequest))
    job = await ctx.service.submit(ctx.endpoint, body, key=ctx.caller.key)
    return json_response(render.accepted(job))


async def runsync(ctx: Context) -> Response:
    """Queue a job and hold the request until it ends or ``wait`` ms (default 90 s) pass."""
    svc = ctx.service
    wait = svc.wait_seconds(ctx.query_as(schemas.WaitQuery).wait, svc.timing.runsync_wait_ms)
    body = submission.from_run(ctx.body_as(schemas.RunRequest))
    job = await svc.submit_and_wait(ctx.endpoint, body, wait, key=ctx.caller.key)
    return json_response(render.status_object(job, svc.clock()))


async def status(ctx: Context) -> Response:
    """The job's status object; its output once it has one."""
    job = await ctx.service.get(ctx.endpoint, ctx.params["job_id"], ctx.caller.viewer)
    return json_response(render.status_object(job, ctx.service.clock()))


async def status_sync(ctx: Context) -> Response:
    """Like ``status``, but holds up to ``wait`` ms (default 90 s) for the job to end."""
    svc = ctx.service
    wait = svc.wait_seconds(ctx.query_as(schemas.WaitQuery).wait, svc.timing.runsync_wait_ms)
    job = await svc.get(ctx.endpoint, ctx.params["job_id"], ctx.caller.viewer)
    job = await svc.wait_terminal(job, wait)
    return json_response(render.status_object(job, svc.clock()))


async def stream(ctx: Context) -> Response:
    """Chunks not returned before (drains). With ``wait`` ms, holds for the first new one."""
    svc = ctx.service
    wait = svc.wait_seconds(ctx.query_as(schemas.WaitQuery).wait, 0)
    job, chunks = await svc.stream(ctx.endpoint, ctx.params["job_id"], wait, ctx.caller.viewer)
    return json_response(render.stream_reply(job, chunks))


async def cancel(ctx: Context) -> Response:
    """Cancel a queued or running job (its worker is told to stop); a finished one is kept."""
    job = await ctx.service.cancel(ctx.endpoint, ctx.params["job_id"], ctx.caller.viewer)
    await ctx.audit("job.cancel", job.id)
    return json_response(render.status_object(job, ctx.service.clock()))


async def retry(ctx: Context) -> Response:
    """Re-queue a FAILED or TIMED_OUT job with the same id and input."""
    job = await ctx.service.retry(ctx.endpoint, ctx.params["job_id"], ctx.caller.viewer)
    await ctx.audit("job.retry", job.id)
    return json_response(render.accepted(job))


async def purge_queue(ctx: Context) -> Response:
    """Cancel every queued job of the endpoint; running jobs keep running."""
    removed = await ctx.service.purge_queue(ctx.endpoint, ctx.caller.viewer)
    await ctx.audit("queue.purge", ctx.endpoint, {"removed": removed})
    return json_response(render.purged(removed))


async def endpoint_health(ctx: Context) -> Response:
    """Jobs by status and workers by state."""
    health = await ctx.service.health(ctx.endpoint, ctx.caller.viewer)
    return json_response(render.endpoint_health(health))
