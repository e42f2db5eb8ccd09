"""The job lifecycle, pure: statuses, legal transitions, and the decisions the sweeper applies.

No I/O here. Every function that needs the time takes ``now`` (seconds since the epoch).
"""

from __future__ import annotations

import dataclasses
import enum

from anypod import types


class JobStatus(enum.StrEnum):
    IN_QUEUE = "IN_QUEUE"  #: accepted, waiting for a worker
    IN_PROGRESS = "IN_PROGRESS"  #: delivered to a worker, which holds a lease on it
    COMPLETED = "COMPLETED"  #: the handler returned a result
    FAILED = "FAILED"  #: the handler failed, or the job ran out of attempts
    TIMED_OUT = "TIMED_OUT"  #: execution timeout or TTL passed
    CANCELLED = "CANCELLED"  #: cancelled by a client


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED}
)
ACTIVE = frozenset({JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS})
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_QUEUE: frozenset(
        {
            JobStatus.IN_PROGRESS,
            JobStatus.CANCELLED,
            JobStatus.TIMED_OUT,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
        }
    ),
    JobStatus.IN_PROGRESS: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.TIMED_OUT,
            JobStatus.CANCELLED,
            JobStatus.IN_QUEUE,
        }
    ),
    JobStatus.FAILED: frozenset({JobStatus.IN_QUEUE}),
    JobStatus.TIMED_OUT: frozenset({JobStatus.IN_QUEUE}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
"""Legal moves. ``IN_QUEUE -> COMPLETED|FAILED`` covers a result that arrives from a worker whose
lease had already lapsed: the work is done, so it is kept rather than run twice."""

DEFAULT_EXECUTION_TIMEOUT_MS = 600_000
DEFAULT_TTL_MS = 86_400_000
MIN_EXECUTION_TIMEOUT_MS = 5_000
MIN_TTL_MS = 10_000
MAX_POLICY_MS = 7 * 86_400_000
LOW_PRIORITY = -1
NORMAL_PRIORITY = 0


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[current]


def is_terminal(status: JobStatus) -> bool:
    return status in TERMINAL


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """Per-job execution policy, RunPod's ``policy`` object."""

    execution_timeout_ms: int = DEFAULT_EXECUTION_TIMEOUT_MS
    ttl_ms: int = DEFAULT_TTL_MS
    low_priority: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewJob:
    """A validated submission, before the store gives it a row."""

    id: str
    endpoint: str
    input: types.RawJSON
    policy: Policy
    webhook: str | None = None
    s3_config: types.RawJSON | None = None
    owner: str | None = None
    retention_ms: int
    max_attempts: int
    created_at: float

    @property
    def priority(self) -> int:
        return LOW_PRIORITY if self.policy.low_priority else NORMAL_PRIORITY

    @property
    def expires_at(self) -> float:
        return self.created_at + self.policy.ttl_ms / 1000

    def queued(self) -> Job:
        """The job as a store holds it right after the insert."""
        return Job(
            id=self.id,
            endpoint=self.endpoint,
            status=JobStatus.IN_QUEUE,
            input=self.input,
            webhook=self.webhook,
            s3_config=self.s3_config,
            policy=self.policy,
            owner=self.owner,
            max_attempts=self.max_attempts,
            retention_ms=self.retention_ms,
            created_at=self.created_at,
            expires_at=self.expires_at,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """A job as the store holds it. Input, output and error stay encoded JSON."""

    id: str
    endpoint: str
    status: JobStatus
    input: types.RawJSON
    output: types.RawJSON | None = None
    error: types.RawJSON | None = None
    webhook: str | None = None
    s3_config: types.RawJSON | None = None
    policy: Policy = Policy()
    owner: str | None = None
    worker_id: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    retention_ms: int = 1_800_000
    created_at: float
    expires_at: float
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    stop_pod: bool = False
    webhook_attempts: int = 0

    @property
    def deadline_at(self) -> float | None:
        if self.started_at is None:
            return None
        return self.started_at + self.policy.execution_timeout_ms / 1000

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def delay_ms(self, now: float) -> int:
        """Milliseconds spent queued before a worker took the job (RunPod ``delayTime``)."""
        until = self.started_at if self.started_at is not None else (self.finished_at or now)
        return max(0, round((until - self.created_at) * 1000))

    def execution_ms(self, now: float) -> int | None:
        """Milliseconds of execution so far (RunPod ``executionTime``)."""
        if self.started_at is None:
            return None
        until = self.finished_at if self.finished_at is not None else now
        return max(0, round((until - self.started_at) * 1000))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the sweeper must do with an overdue job: requeue it or end it with ``error``."""

    status: JobStatus
    error: str | None = None

    @property
    def requeue(self) -> bool:
        return self.status is JobStatus.IN_QUEUE


def overdue_outcome(job: Job, now: float) -> Outcome | None:
    """Decide what happens to an active job whose TTL, execution timeout or lease has passed."""
    if job.terminal:
        return None
    if now >= job.expires_at:
        return Outcome(JobStatus.TIMED_OUT, f"job TTL of {job.policy.ttl_ms} ms expired")
    if job.status is not JobStatus.IN_PROGRESS:
        return None
    deadline = job.deadline_at
    if deadline is not None and now >= deadline:
        limit = job.policy.execution_timeout_ms
        return Outcome(JobStatus.TIMED_OUT, f"execution timeout of {limit} ms exceeded")
    if job.lease_expires_at is not None and now >= job.lease_expires_at:
        return lapsed_lease_outcome(job)
    return None


def lapsed_lease_outcome(job: Job) -> Outcome:
    """A worker stopped reporting a job: run it again while attempts remain, else fail it."""
    if job.attempts < job.max_attempts:
        return Outcome(JobStatus.IN_QUEUE)
    return Outcome(
        JobStatus.FAILED,
        f"worker {job.worker_id} stopped responding (missed pings, lease lapsed) on attempt "
        f"{job.attempts} of {job.max_attempts}; giving up",
    )


def purge_at(job: Job) -> float | None:
    """When a finished job's result may be deleted."""
    if job.finished_at is None:
        return None
    return job.finished_at + job.retention_ms / 1000
