"""The store interface: domain operations on jobs, one implementation per database.

SQL lives in the implementations. Every method is a short transaction; methods that change a
job are compare-and-set on its status, so a late or duplicate report can never move a job twice.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from anypod import jobs, types

INSERT_COLUMNS = (
    "id, endpoint, priority, input, webhook, s3_config, execution_timeout_ms, ttl_ms, "
    "low_priority, retention_ms, owner, max_attempts, created_at, expires_at"
)


def insert_values(new: jobs.NewJob) -> tuple[object, ...]:
    """Values for the stores' INSERT, in :data:`INSERT_COLUMNS` order."""
    return (
        new.id,
        new.endpoint,
        new.priority,
        new.input,
        new.webhook,
        new.s3_config,
        new.policy.execution_timeout_ms,
        new.policy.ttl_ms,
        new.policy.low_priority,
        new.retention_ms,
        new.owner,
        new.max_attempts,
        new.created_at,
        new.expires_at,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """A worker's final report for a job."""

    status: jobs.JobStatus
    output: types.RawJSON | None = None
    error: types.RawJSON | None = None
    stop_pod: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Counts:
    """Jobs of one endpoint by status, as ``/health`` reports them."""

    in_queue: int = 0
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    retried: int = 0

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Counts:
        """From ``(status, count, retried)`` rows, as both stores' GROUP BY returns them."""
        rows = list(rows)
        by = {status: n for status, n, _ in rows}
        return cls(
            in_queue=by.get("IN_QUEUE", 0),
            in_progress=by.get("IN_PROGRESS", 0),
            completed=by.get("COMPLETED", 0),
            failed=by.get("FAILED", 0),
            cancelled=by.get("CANCELLED", 0),
            timed_out=by.get("TIMED_OUT", 0),
            retried=sum(r or 0 for _, _, r in rows),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """What the last ping said about a worker."""

    id: str
    endpoint: str
    last_seen: float
    job_ids: tuple[str, ...] = ()
    gpu: str | None = None
    version: str | None = None
    unhealthy: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobQuery:
    """A page of jobs for the queue browser."""

    endpoint: str | None = None
    status: jobs.JobStatus | None = None
    owner: str | None = None
    limit: int = 100
    before_seq: int | None = None


class Store(abc.ABC):
    """Durable job storage. Open it with ``async with``; all methods are coroutine-safe."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and check (or, with ``migrate=True`` at construction, apply) the schema."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`errors.StoreUnavailable` when the database cannot be reached."""

    # --- client side -------------------------------------------------------------------------

    @abc.abstractmethod
    async def submit(self, new: jobs.NewJob) -> jobs.Job:
        """Insert a queued job. Durable when this returns."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> jobs.Job | None: ...

    @abc.abstractmethod
    async def list_jobs(self, query: JobQuery) -> list[jobs.Job]:
        """Newest first."""

    @abc.abstractmethod
    async def counts(self, endpoint: str) -> Counts: ...

    @abc.abstractmethod
    async def cancel(self, job_id: str, now: float) -> jobs.Job | None:
        """Cancel an active job; a terminal job is returned unchanged; None if unknown."""

    @abc.abstractmethod
    async def retry(self, job_id: str, now: float) -> jobs.Job | None:
        """Re-queue a FAILED or TIMED_OUT job (same id and input); others unchanged."""

    @abc.abstractmethod
    async def purge_queue(self, endpoint: str, now: float) -> int:
        """Cancel every IN_QUEUE job of an endpoint; return how many."""

    # --- worker side -------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(
        self, endpoint: str, worker_id: str, limit: int, now: float, lease_until: float
    ) -> list[jobs.Job]:
        """Move up to ``limit`` queued jobs to IN_PROGRESS for ``worker_id``.

        Highest priority first, then oldest. Each claim counts as an attempt.
        """

    @abc.abstractmethod
    async def finish(self, job_id: str, result: Result, now: float) -> jobs.Job | None:
        """End an active job. Returns None (and changes nothing) if it was already terminal."""

    @abc.abstractmethod
    async def record_progress(self, job_id: str, output: types.RawJSON) -> bool:
        """Store a progress update on an IN_PROGRESS job; False if the job is not running."""

    @abc.abstractmethod
    async def append_stream(self, job_id: str, output: types.RawJSON) -> bool:
        """Append one ``/stream`` chunk to an IN_PROGRESS job."""

    @abc.abstractmethod
    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        """Return and remove the chunks not yet returned, oldest first."""

    @abc.abstractmethod
    async def renew_leases(self, worker: WorkerInfo, lease_until: float) -> list[str]:
        """Record a ping. Extend the leases of the worker's listed IN_PROGRESS jobs.

        Returns the listed ids the worker should stop: jobs that are terminal, unknown, or now
        belong to another worker.
        """

    @abc.abstractmethod
    async def workers(self, endpoint: str | None, seen_since: float) -> list[WorkerInfo]: ...

    # --- sweeping ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        """Active jobs whose TTL, execution deadline or lease has passed."""

    @abc.abstractmethod
    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Outcome] | None:
        """Re-check :func:`jobs.overdue_outcome` inside a transaction and apply it."""

    @abc.abstractmethod
    async def purge_finished(self, now: float) -> int:
        """Delete finished jobs whose retention window has passed."""

    @abc.abstractmethod
    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        """Claim finished jobs with an undelivered webhook due now (hidden until lease_until)."""

    @abc.abstractmethod
    async def webhook_done(self, job_id: str, *, delivered: bool, retry_at: float | None) -> None:
        """Record a delivery attempt. ``retry_at`` None with delivered False means give up."""

    # --- credentials -------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_worker_token(self, endpoint: str, token_hash: str, now: float) -> None: ...

    @abc.abstractmethod
    async def worker_token_endpoint(self, token_hash: str) -> str | None:
        """The endpoint a (hashed) worker token serves, or None."""
