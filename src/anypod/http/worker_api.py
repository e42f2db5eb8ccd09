"""RunPod's worker protocol, one thin handler per route. Workers authenticate with the
endpoint's worker token, sent raw in ``Authorization`` as the runpod SDK does (``Bearer`` is
accepted too). Declared in ``http/routes.py``."""

from __future__ import annotations

from starlette.responses import Response

from anypod import errors, jobs, types
from anypod.http import hangup
from anypod.http.context import Context
from anypod.http.responses import json_response, no_content
from anypod.protocols import errors as wire_errors
from anypod.protocols.runpod import limits, render, reports, schemas


def _holder(ctx: Context) -> jobs.Holder:
    """The worker named in the path, on the endpoint its token serves: reports are fenced to
    the jobs it holds."""
    return jobs.Holder(worker_id=_worker(ctx), endpoint=ctx.endpoint)


def _worker(ctx: Context) -> str:
    return reports.worker_id(ctx.params["worker_id"])


async def job_take(ctx: Context) -> Response:
    """One job, held up to the take hold (< 90 s); 204 when none came."""
    taken = await _take(ctx, 1)
    return json_response(render.worker_job(taken[0])) if taken else no_content()


async def job_take_batch(ctx: Context) -> Response:
    """Up to ``batch_size`` jobs as a JSON list; 204 when none came."""
    size = min(ctx.query_as(schemas.TakeBatchQuery).batch_size, limits.MAX_TAKE_BATCH)
    taken = await _take(ctx, size)
    return json_response([render.worker_job(job) for job in taken]) if taken else no_content()


async def _take(ctx: Context, limit: int, *, hold: bool = True) -> list[jobs.Job]:
    """Claims for a worker still there: none once it hangs up (``http/hangup.py``)."""
    async with hangup.watch(ctx.request.receive) as gone:
        return await ctx.service.take(ctx.endpoint, _worker(ctx), limit, gone=gone, hold=hold)


async def _next(ctx: Context, reply: types.JSONDict) -> Response:
    """The reply to a result, with the jobs ``?next=N`` asked for (claimed at once, not held):
    anypod's worker reports and takes in one round trip. RunPod's workers never ask."""
    wanted = min(ctx.query_as(schemas.NextQuery).next, limits.MAX_TAKE_BATCH)
    if wanted:
        reply["next"] = [render.worker_job(job) for job in await _take(ctx, wanted, hold=False)]
    return json_response(reply)


async def job_done(ctx: Context) -> Response:
    """The result (or, with ``status: IN_PROGRESS``, a progress update) of a job."""
    report = reports.from_job_done(ctx.body_as(schemas.JobDoneBody))
    await ctx.service.report(_holder(ctx), ctx.params["job_id"], report)
    return await _next(ctx, {"ok": True})


async def job_done_batch(ctx: Context) -> Response:
    """anypod's extension: ``[{"id": job, "result": <job-done body>}, ...]`` in one post. Each
    item stands alone: the reply lists the ones refused (with the status a single ``job-done``
    would have answered), and every other one was applied (or was a repeat)."""
    items = reports.from_job_done_batch(ctx.body_as(schemas.JobDoneBatch))
    outcomes = await ctx.service.report_many(_holder(ctx), items)
    refused = [
        _refusal(job_id, exc) for (job_id, _), exc in zip(items, outcomes, strict=True) if exc
    ]
    return await _next(
        ctx, {"ok": not refused, "count": len(items) - len(refused), "refused": refused}
    )


def _refusal(job_id: str, exc: errors.AnypodError) -> types.JSONDict:
    status, code = wire_errors.status_and_code(exc)
    return {"id": job_id, "status": status, "code": code, "error": exc.message}


async def job_stream(ctx: Context) -> Response:
    """One streamed chunk of a generator handler's output."""
    chunk = reports.from_chunk(ctx.body_as(schemas.StreamChunk))
    await ctx.service.stream_chunk(_holder(ctx), ctx.params["job_id"], chunk)
    return json_response({"ok": True})


async def ping(ctx: Context) -> Response:
    """Liveness; ``job_id=a,b`` lists the jobs the worker holds (their leases are renewed)."""
    worker = reports.from_ping(
        ctx.query_as(schemas.PingQuery),
        worker_id=_worker(ctx),
        endpoint=ctx.endpoint,
        now=ctx.service.clock(),
    )
    await ctx.service.ping(worker)
    return json_response({"ok": True})


async def job_stop(ctx: Context) -> Response:
    """Held until a job of this worker must stop (cancel, timeout); 204 when none."""
    stops = await ctx.service.stop_signals(ctx.endpoint, _worker(ctx))
    return json_response({"jobsToStop": stops}) if stops else no_content()


async def job_release(ctx: Context) -> Response:
    """anypod's extension: taken jobs the worker will not run go back to the queue now, not
    when their lease lapses (only those it holds)."""
    ids = ctx.body_as(schemas.ReleaseBody).ids
    released = await ctx.service.release(_holder(ctx), ids)
    return json_response({"released": released})
