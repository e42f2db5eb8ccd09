"""What a worker posts, as domain records: a ``job-done`` body is a :class:`jobs.Progress`
(``status: IN_PROGRESS``) or a :class:`jobs.Result`; a ``job-stream`` body is one chunk."""

from __future__ import annotations

from anypod import jobs, types
from anypod.protocols.runpod import schemas
from anypod.protocols.runpod.submission import encode


def from_job_done(body: schemas.JobDoneBody) -> jobs.Report:
    if body.status == jobs.S.IN_PROGRESS:
        return jobs.Progress(encode(body.output, "output"))
    error = body.error
    return jobs.Result(
        output=encode(body.output, "output") if "output" in body.model_fields_set else None,
        error=encode(error, "error") if error is not None else None,
        stop_pod=body.stopPod,
    )


def from_job_done_batch(body: schemas.JobDoneBatch) -> list[tuple[str, jobs.Report]]:
    return [(item.id, from_job_done(item.result)) for item in body.root]


def from_chunk(body: schemas.StreamChunk) -> types.RawJSON:
    return encode(body.output, "output")
