"""RunPod's request and reply bodies, and query parameters, as pydantic models.

The route table names these: a request is validated with its model (so what ``/docs`` shows is
what the server enforces), and the OpenAPI document is generated from them. Replies are built
by :mod:`.render` (stored JSON is spliced in unparsed); their models document them, and the
HTTP tests check every reply against its route's model.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
)
from pydantic_core import PydanticCustomError

from anypod import jobs, webhook_targets
from anypod.protocols.runpod.limits import MAX_DONE_BATCH, MAX_TAKE_BATCH


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown keys are dropped, as RunPod does


# --- requests ------------------------------------------------------------------------------------


def _http_url(value: str | None) -> str | None:
    if not value:
        return None
    return webhook_targets.check_url(value)  # ValueError: a 400 naming the field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string stored in a text column (PostgreSQL's cannot hold NUL)."""


def _ms(minimum: int, default: str) -> Any:
    return Field(
        None,
        ge=minimum,
        le=jobs.MAX_POLICY_MS,
        description=f"ms, {minimum // 1000} s to 7 days; default: the endpoint's ({default})",
    )


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executionTimeout: StrictInt | None = _ms(jobs.MIN_EXECUTION_TIMEOUT_MS, "600000")
    ttl: StrictInt | None = _ms(jobs.MIN_TTL_MS, "24 h, counted from submission")
    lowPriority: StrictBool = Field(False, description="queued behind normal-priority jobs")


def _unknown_field(value: Any) -> Any:
    accepted = ", ".join(RunRequest.model_fields)
    raise PydanticCustomError(
        "unknown_field", "unknown field; accepted: {accepted}", {"accepted": accepted}
    )


class RunRequest(Model):
    """Unlike the worker bodies, strict: a misspelt or unsupported key (``delay``, ``id``) is a
    400 naming it, not silently dropped."""

    # extras are validated one by one (so the error names the key) and always refused
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(_unknown_field)]] = Field(
        init=False
    )

    input: dict[str, Any] = Field(..., description="handed to the handler as job['input']")
    webhook: Annotated[str | None, AfterValidator(_http_url)] = Field(
        None, description="an http(s) URL POSTed the status object plus input when the job ends"
    )
    policy: Policy | None = None
    s3Config: dict[str, Any] | None = Field(None, description="passed through to the worker")


class JobDoneBody(Model):
    """A worker's report: with ``status: IN_PROGRESS`` a progress update, else the result
    (failed when ``error`` is present)."""

    output: Any = Field(None, description="the result, or the progress value")
    error: Any = Field(None, description="the handler's error, kept exactly as posted")
    status: Any = Field(None, description="IN_PROGRESS for a progress update")
    stopPod: bool = Field(False, description="the worker restarts its handler after this job")


class JobDoneItem(BaseModel):
    id: Text
    result: JobDoneBody


def _few_results(value: Any) -> Any:
    """Counted before the items are validated (``max_length`` counts after: 200k of them were
    all made into models before being refused)."""
    if isinstance(value, list) and len(value) > MAX_DONE_BATCH:
        raise ValueError(f"at most {MAX_DONE_BATCH} results in one post, not {len(value)}")
    return value


class JobDoneBatch(
    RootModel[
        Annotated[
            list[JobDoneItem], BeforeValidator(_few_results), Field(max_length=MAX_DONE_BATCH)
        ]
    ]
):
    """anypod's ``job-done-batch``: several results in one post."""


class ReleaseBody(BaseModel):
    """anypod's ``job-release``: jobs the worker took but will not run (it is stopping, or
    they were prefetched behind a job that turned out long); back to the queue at once."""

    ids: list[Text] = Field(..., max_length=MAX_DONE_BATCH)


class StreamChunk(Model):
    output: Any = Field(None, description="one item a generator handler yielded")


# --- query parameters --------------------------------------------------------------------------


class WaitQuery(Model):
    wait: int | None = Field(None, ge=0, description="ms to hold the request (capped at 300000)")


class TakeQuery(Model):
    job_in_progress: str | None = Field(None, description="1: the worker is busy (not used)")
    gpu: str | None = Field(None, description="the worker's GPU (not used here; see ping)")


class TakeBatchQuery(TakeQuery):
    batch_size: int = Field(1, ge=1, description=f"jobs at most (capped at {MAX_TAKE_BATCH})")


class NextQuery(Model):
    next: int = Field(
        0,
        ge=0,
        description="anypod's extension: also claim up to this many jobs for the worker (capped"
        f" at {MAX_TAKE_BATCH}), returned in the reply's ``next``, sparing a job-take",
    )


class ResultQuery(NextQuery):
    isStream: str | None = Field(None, description="the SDK's flag (True/False); not used")
    gpu: str | None = None


class PingQuery(Model):
    """Free text is kept to its first 300 characters (``reports.from_ping``)."""

    job_id: str = Field("", description="comma-separated ids of the jobs the worker holds")
    gpu: str | None = Field(None, description="the worker's GPU, shown by /health")
    runpod_version: str | None = None
    status: str | None = Field(None, description="'unhealthy' with check and reason")
    check: str | None = None
    reason: str | None = None


# --- replies -------------------------------------------------------------------------------------


class JobAccepted(BaseModel):
    id: str
    status: str = "IN_QUEUE"


class StatusObject(BaseModel):
    id: str
    status: str = Field(
        ..., description="IN_QUEUE IN_PROGRESS COMPLETED FAILED CANCELLED TIMED_OUT"
    )
    delayTime: int | None = Field(None, description="ms queued before a worker took it")
    executionTime: int | None = Field(None, description="ms of execution")
    workerId: str | None = None
    output: Any = Field(None, description="the result; while IN_PROGRESS, the latest progress")
    error: Any = Field(None, description="the worker's error, exactly as posted")
    retries: int | None = Field(None, description="runs after the first")


class StreamItem(BaseModel):
    output: Any


class StreamReply(BaseModel):
    id: str
    status: str
    stream: list[StreamItem]


class PurgeReply(BaseModel):
    removed: int
    status: str = "completed"


class JobCounts(BaseModel):
    completed: int
    failed: int
    inProgress: int
    inQueue: int
    retried: int
    cancelled: int
    timedOut: int


class WorkerCounts(BaseModel):
    idle: int
    running: int
    unhealthy: int


class EndpointHealth(BaseModel):
    jobs: JobCounts
    workers: WorkerCounts


class WorkerJob(BaseModel):
    id: str
    input: dict[str, Any]
    webhook: str | None = None
    s3Config: dict[str, Any] | None = None


class WorkerJobs(RootModel[list[WorkerJob]]):
    pass


class Ok(BaseModel):
    ok: bool = True


class DoneReply(Ok):
    next: list[WorkerJob] | None = Field(None, description="jobs claimed for ``?next=``")


class Refused(BaseModel):
    """One item of a ``job-done-batch`` that did not apply, as ``job-done`` would answer it."""

    id: str
    status: int
    code: str
    error: str


class DoneBatchReply(Ok):
    """``ok`` is false when any item was refused; ``count`` items were applied or repeats."""

    count: int
    refused: list[Refused]
    next: list[WorkerJob] | None = Field(None, description="jobs claimed for ``?next=``")


class Released(BaseModel):
    released: list[str] = Field(..., description="the ids handed back (those the worker held)")


class JobsToStop(BaseModel):
    jobsToStop: list[str]
