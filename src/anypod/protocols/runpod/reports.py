"""What a worker sends, as domain records: a ``job-done`` body is a :class:`jobs.Progress`
(``status: IN_PROGRESS``) or a :class:`jobs.Result`; a ``job-stream`` body is one chunk; a
ping's query is a :class:`store.WorkerInfo`."""

from __future__ import annotations

from anypod import errors, jobs, types
from anypod.protocols.runpod import limits, schemas
from anypod.protocols.runpod.submission import encode
from anypod.store import WorkerInfo

MAX_LABEL = 300  # characters kept of a ping's free text (GPU name, version, unhealthy reason)
MAX_ID = 128  # characters in a worker id or a job id a worker names
MAX_HELD = limits.MAX_PING_IDS


def worker_id(value: str) -> str:
    """A worker id from a path: short and printable, since it travels in stop notifications
    and logs (``job-take``, ``job-done``, ``ping``, ``job-stop``)."""
    if len(value) > MAX_ID:
        raise errors.InvalidRequest(f"longer than {MAX_ID} characters", field="worker_id")
    if not value.isprintable() or "," in value:
        raise errors.InvalidRequest("must be printable, without commas", field="worker_id")
    return value


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


def from_ping(q: schemas.PingQuery, *, worker_id: str, endpoint: str, now: float) -> WorkerInfo:
    unhealthy = None
    if q.status == "unhealthy":
        unhealthy = f"{q.check or '?'}: {q.reason or ''}"
    return WorkerInfo(
        id=worker_id,
        endpoint=endpoint,
        last_seen=now,
        job_ids=_held(q.job_id),
        gpu=_label(q.gpu),
        version=_label(q.runpod_version),
        unhealthy=_label(unhealthy),
    )


def _held(listed: str) -> tuple[str, ...]:
    ids = tuple(j for j in listed.split(",") if j)
    if len(ids) > MAX_HELD:
        raise errors.InvalidRequest(f"lists more than {MAX_HELD} jobs", field="job_id")
    if any(len(j) > MAX_ID for j in ids):
        raise errors.InvalidRequest(f"a job id is longer than {MAX_ID} characters", field="job_id")
    return ids


def _label(text: str | None) -> str | None:
    return None if text is None else text[:MAX_LABEL]
