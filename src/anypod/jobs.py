"""The job lifecycle, pure: statuses, the transition table, and every decision that moves a job.

Each move is a small record (:class:`Claim`, :class:`End`, :class:`Requeue`, :class:`Release`,
:class:`Retry`) made by a function here (``claim``, ``finish``, ``cancel``, ``time_out``,
``fail``, ``requeue``, ``release``, ``retry``, ``overdue``) that refuses a move the table
forbids. :func:`apply` is the reference meaning of a move; the in-memory store runs it, and
the SQL stores do the same as one compare-and-set statement (``store/sql.py``), which the
store contract suite holds to it. Webhook delivery has its own small state machine beside the job's.

No I/O here. Every function that needs the time takes ``now`` (seconds since the epoch).
"""

from __future__ import annotations

import dataclasses
import enum
import json

from anypod import types


class JobStatus(enum.StrEnum):
    IN_QUEUE = "IN_QUEUE"  #: accepted, waiting for a worker
    IN_PROGRESS = "IN_PROGRESS"  #: delivered to a worker, which holds a lease on it
    COMPLETED = "COMPLETED"  #: the handler returned a result
    FAILED = "FAILED"  #: the handler failed, or the job ran out of attempts
    TIMED_OUT = "TIMED_OUT"  #: execution timeout or TTL passed
    CANCELLED = "CANCELLED"  #: cancelled by a client


class WebhookState(enum.StrEnum):
    PENDING = "pending"  #: the job ended and its webhook is due (again, after a failed try)
    DELIVERED = "delivered"  #: the receiver answered 2xx
    FAILED = "failed"  #: every attempt failed; given up


S = JobStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED})
ACTIVE = frozenset({S.IN_QUEUE, S.IN_PROGRESS})
RETRYABLE = frozenset({S.FAILED, S.TIMED_OUT})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.IN_QUEUE: frozenset({S.IN_PROGRESS, S.CANCELLED, S.TIMED_OUT, S.COMPLETED, S.FAILED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.IN_QUEUE}),
    S.FAILED: frozenset({S.IN_QUEUE}),
    S.TIMED_OUT: frozenset({S.IN_QUEUE}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""Legal moves. ``IN_QUEUE -> FAILED`` and the other ends from the queue are the server's
(cancel, TTL). A worker's result is fenced to the job it holds (:class:`Holder`): it ends only
an ``IN_PROGRESS`` job claimed by that worker on that endpoint."""

DEFAULT_EXECUTION_TIMEOUT_MS = 600_000
DEFAULT_TTL_MS = 86_400_000
MIN_EXECUTION_TIMEOUT_MS = 5_000
MIN_TTL_MS = 10_000
MAX_POLICY_MS = 7 * 86_400_000
LOW_PRIORITY = -1
NORMAL_PRIORITY = 0


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[current]


# --- records -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """Per-job execution policy (RunPod's ``policy`` object)."""

    execution_timeout_ms: int = DEFAULT_EXECUTION_TIMEOUT_MS
    ttl_ms: int = DEFAULT_TTL_MS
    low_priority: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Submission:
    """What a client asked for, in any wire format, before the service gives it an id.

    ``None`` in ``execution_timeout_ms`` / ``ttl_ms`` means "the endpoint's default"."""

    input: types.RawJSON
    execution_timeout_ms: int | None = None
    ttl_ms: int | None = None
    low_priority: bool = False
    webhook: str | None = None
    s3_config: types.RawJSON | None = None  # handed to the worker unchanged


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewJob:
    """A submission with its id, owner and policy settled, before the store gives it a row."""

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
            status=S.IN_QUEUE,
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
    webhook_state: WebhookState | None = None
    webhook_attempts: int = 0
    retries: int = 0  # times a client re-queued it with /retry

    @property
    def priority(self) -> int:
        return LOW_PRIORITY if self.policy.low_priority else NORMAL_PRIORITY

    @property
    def deadline_at(self) -> float | None:
        if self.started_at is None:
            return None
        return self.started_at + self.policy.execution_timeout_ms / 1000

    @property
    def purge_at(self) -> float | None:
        """When a finished job's result may be deleted."""
        if self.finished_at is None:
            return None
        return self.finished_at + self.retention_ms / 1000

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """A worker's final report on a job: failed when it carries an ``error``."""

    output: types.RawJSON | None = None
    error: types.RawJSON | None = None
    stop_pod: bool = False

    @property
    def status(self) -> JobStatus:
        return S.FAILED if self.error is not None else S.COMPLETED


@dataclasses.dataclass(frozen=True)
class Progress:
    """A progress update while the job runs: shown as the job's ``output`` until it ends."""

    output: types.RawJSON


Report = Result | Progress


# --- moves ---------------------------------------------------------------------------------------


def _legal(sources: frozenset[JobStatus], target: JobStatus) -> None:
    for source in sources:
        if not can_transition(source, target):
            raise ValueError(f"illegal job transition {source} -> {target}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claim:
    """``IN_QUEUE -> IN_PROGRESS``: a worker takes the job and holds a lease on it."""

    SOURCES = frozenset({S.IN_QUEUE})
    worker_id: str
    started_at: float
    lease_expires_at: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Holder:
    """The worker a report comes from, on the endpoint its token serves. A worker's result,
    progress or stream chunk applies only to a job this holder holds (lease fencing)."""

    worker_id: str
    endpoint: str

    def holds(self, job: Job) -> bool:
        return (
            job.status is S.IN_PROGRESS
            and job.worker_id == self.worker_id
            and job.endpoint == self.endpoint
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class End:
    """``IN_QUEUE | IN_PROGRESS -> terminal``. With a ``holder`` (a worker's result) only the
    job that worker holds moves, and ``output`` None keeps its last progress update; the
    server's ends (no holder) leave no output."""

    SOURCES = ACTIVE
    status: JobStatus
    finished_at: float
    output: types.RawJSON | None = None
    error: types.RawJSON | None = None
    stop_pod: bool = False
    holder: Holder | None = None

    def __post_init__(self) -> None:
        if self.status not in END_STATUSES:
            raise ValueError(f"illegal job transition {sorted(self.SOURCES)} -> {self.status}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Requeue:
    """``IN_PROGRESS -> IN_QUEUE``: the worker's lease lapsed and attempts remain."""

    SOURCES = frozenset({S.IN_PROGRESS})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Release:
    """``IN_PROGRESS -> IN_QUEUE``: a claim that never reached its worker (it hung up while
    the reply was on its way) is undone, attempt included. Only the holder's claim."""

    SOURCES = frozenset({S.IN_PROGRESS})
    holder: Holder


@dataclasses.dataclass(frozen=True, kw_only=True)
class Retry:
    """``FAILED | TIMED_OUT -> IN_QUEUE`` by a client: same id and input, attempts and TTL anew."""

    SOURCES = RETRYABLE
    at: float


Move = Claim | End | Requeue | Release | Retry
END_STATUSES = frozenset(s for s in TERMINAL if all(can_transition(a, s) for a in End.SOURCES))

_legal(Claim.SOURCES, S.IN_PROGRESS)
_legal(Requeue.SOURCES, S.IN_QUEUE)
_legal(Release.SOURCES, S.IN_QUEUE)
_legal(Retry.SOURCES, S.IN_QUEUE)


def claim(worker_id: str, now: float, lease_seconds: float) -> Claim:
    return Claim(worker_id=worker_id, started_at=now, lease_expires_at=now + lease_seconds)


def finish(result: Result, holder: Holder, now: float) -> End:
    """The worker ``holder`` reported the result of the job it holds."""
    return End(
        status=result.status,
        finished_at=now,
        output=result.output,
        error=result.error,
        stop_pod=result.stop_pod,
        holder=holder,
    )


def cancel(now: float) -> End:
    return End(status=S.CANCELLED, finished_at=now)


def time_out(message: str, now: float) -> End:
    return End(status=S.TIMED_OUT, finished_at=now, error=_message(message))


def fail(message: str, now: float) -> End:
    return End(status=S.FAILED, finished_at=now, error=_message(message))


def requeue() -> Requeue:
    return Requeue()


def release(holder: Holder) -> Release:
    return Release(holder=holder)


def retry(now: float) -> Retry:
    return Retry(at=now)


def _message(text: str) -> types.RawJSON:
    return json.dumps(text).encode()


def overdue(job: Job, now: float) -> End | Requeue | None:
    """What happens to a job whose TTL, execution timeout or lease has passed (None: nothing)."""
    if job.terminal:
        return None
    if now >= job.expires_at:
        return time_out(f"job TTL of {job.policy.ttl_ms} ms expired", now)
    if job.status is not S.IN_PROGRESS:
        return None
    deadline = job.deadline_at
    if deadline is not None and now >= deadline:
        return time_out(f"execution timeout of {job.policy.execution_timeout_ms} ms exceeded", now)
    if job.lease_expires_at is not None and now >= job.lease_expires_at:
        return lapsed_lease(job, now)
    return None


def lapsed_lease(job: Job, now: float) -> End | Requeue:
    """A worker stopped reporting a job: run it again while attempts remain, else fail it."""
    if job.attempts < job.max_attempts:
        return requeue()
    return fail(
        f"worker {job.worker_id} stopped responding (missed pings, lease lapsed) on attempt "
        f"{job.attempts} of {job.max_attempts}; giving up",
        now,
    )


def apply(job: Job, move: Move) -> Job | None:
    """The job after ``move``, or None when its status does not allow the move (compare and
    set). The SQL stores implement exactly this in their statements."""
    if job.status not in move.SOURCES:
        return None
    match move:
        case Claim():
            return dataclasses.replace(
                job,
                status=S.IN_PROGRESS,
                worker_id=move.worker_id,
                attempts=job.attempts + 1,
                started_at=move.started_at,
                lease_expires_at=move.lease_expires_at,
            )
        case End():
            if move.holder is not None and not move.holder.holds(job):
                return None
            return _ended(job, move)
        case Requeue():
            return _requeued(job, attempts=job.attempts)
        case Release():
            if not move.holder.holds(job):
                return None
            return _requeued(job, attempts=job.attempts - 1)
        case Retry():
            return _retried(job, move)


def _requeued(job: Job, *, attempts: int) -> Job:
    return dataclasses.replace(
        job,
        status=S.IN_QUEUE,
        worker_id=None,
        started_at=None,
        lease_expires_at=None,
        output=None,
        attempts=attempts,
    )


def _ended(job: Job, end: End) -> Job:
    return dataclasses.replace(
        job,
        status=end.status,
        output=end.output if end.output is not None or end.holder is None else job.output,
        error=end.error,
        finished_at=end.finished_at,
        stop_pod=end.stop_pod,
        lease_expires_at=None,
        webhook_state=WebhookState.PENDING if job.webhook is not None else None,
    )


def _retried(job: Job, retry: Retry) -> Job:
    return dataclasses.replace(
        job,
        status=S.IN_QUEUE,
        output=None,
        error=None,
        worker_id=None,
        started_at=None,
        finished_at=None,
        lease_expires_at=None,
        attempts=0,
        stop_pod=False,
        webhook_state=None,
        webhook_attempts=0,
        retries=job.retries + 1,
        expires_at=retry.at + job.policy.ttl_ms / 1000,
    )


# --- webhook delivery ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookAttempt:
    """The outcome of one delivery attempt: the new state, and when to try again if pending."""

    state: WebhookState
    next_at: float | None = None


def webhook_attempted(
    attempt: int, *, delivered: bool, max_attempts: int, retry_delay: float, now: float
) -> WebhookAttempt:
    """After attempt number ``attempt`` (1-based): delivered, due again later, or given up."""
    if delivered:
        return WebhookAttempt(state=WebhookState.DELIVERED)
    if attempt < max_attempts:
        return WebhookAttempt(state=WebhookState.PENDING, next_at=now + retry_delay)
    return WebhookAttempt(state=WebhookState.FAILED)
