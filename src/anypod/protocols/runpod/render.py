"""Domain records as RunPod's reply bodies: the status object, stream replies, the job a
worker takes, the webhook envelope, endpoint health.

Inputs and outputs stay encoded; :class:`orjson.Fragment` splices them into replies unparsed.
"""

from __future__ import annotations

import orjson

from anypod import jobs, service, types


def fragment(raw: types.RawJSON) -> orjson.Fragment:
    return orjson.Fragment(raw)


def accepted(job: jobs.Job) -> types.JSONDict:
    """The reply to ``/run`` and ``/retry``."""
    return {"id": job.id, "status": job.status.value}


def status_object(job: jobs.Job, now: float) -> types.JSONDict:
    """The object ``/status``, ``/runsync``, ``/cancel`` and webhooks return."""
    body: types.JSONDict = {"id": job.id, "status": job.status.value}
    if job.started_at is not None or job.terminal:
        body["delayTime"] = job.delay_ms(now)
    execution = job.execution_ms(now)
    if execution is not None:
        body["executionTime"] = execution
    if job.worker_id is not None:
        body["workerId"] = job.worker_id
    if job.output is not None:
        body["output"] = fragment(job.output)
    if job.error is not None:
        body["error"] = fragment(job.error)
    if job.attempts > 1:
        body["retries"] = job.attempts - 1
    return body


def webhook_payload(job: jobs.Job, now: float) -> types.JSONDict:
    """What RunPod posts to a webhook: the status object plus ``input`` and ``webhook``."""
    body = status_object(job, now)
    body["input"] = fragment(job.input)
    body["webhook"] = job.webhook
    return body


def worker_job(job: jobs.Job) -> types.JSONDict:
    """The job dict a worker's handler receives: ``id``, ``input``, and pass-through extras."""
    body: types.JSONDict = {"id": job.id, "input": fragment(job.input)}
    if job.webhook is not None:
        body["webhook"] = job.webhook
    if job.s3_config is not None:
        body["s3Config"] = fragment(job.s3_config)
    return body


def stream_reply(job: jobs.Job, chunks: list[types.RawJSON]) -> types.JSONDict:
    return {
        "id": job.id,
        "status": job.status.value,
        "stream": [{"output": fragment(c)} for c in chunks],
    }


def purged(removed: int) -> types.JSONDict:
    return {"removed": removed, "status": "completed"}


def endpoint_health(health: service.EndpointHealth) -> types.JSONDict:
    """``/v2/{endpoint}/health``: jobs by status and workers by state."""
    counts = health.counts
    return {
        "jobs": {
            "completed": counts.completed,
            "failed": counts.failed,
            "inProgress": counts.in_progress,
            "inQueue": counts.in_queue,
            "retried": counts.retried,
            "cancelled": counts.cancelled,
            "timedOut": counts.timed_out,
        },
        "workers": {
            "idle": health.idle_workers,
            "running": health.running_workers,
            "unhealthy": health.unhealthy_workers,
        },
    }
