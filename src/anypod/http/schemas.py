"""Pydantic models that document the API in OpenAPI (``/docs``).

Hot routes parse with orjson and validate in :mod:`anypod.submission`; these models describe
the same shapes for readers and generated clients.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Policy(BaseModel):
    executionTimeout: int | None = Field(None, description="ms, 5 s to 7 days; default 600000")
    ttl: int | None = Field(None, description="ms from submission, 10 s to 7 days; default 24 h")
    lowPriority: bool = Field(False, description="queued behind normal-priority jobs")


class RunRequest(BaseModel):
    input: dict[str, Any] = Field(..., description="handed to the handler as job['input']")
    webhook: str | None = Field(None, description="POSTed the status object + input when done")
    policy: Policy | None = None
    s3Config: dict[str, Any] | None = Field(None, description="passed through to the worker")


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
    retries: int | None = None


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


class ErrorReply(BaseModel):
    error: str
    field: str | None = None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents a JSON body the route reads itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorReply} for code in (400, 401, 404, 409, 413, 503)
}
