"""The store interface: domain operations on jobs, one implementation per database.

The decisions are made in :mod:`anypod.jobs` and handed in as moves (:class:`jobs.Claim`,
:class:`jobs.End`, ...); a store only persists them. Every method is a short transaction and
every move is a compare-and-set on the job's status, so a late or duplicate report can never
move a job twice. SQL lives in ``store/sql.py``, shared by the SQLite and PostgreSQL stores;
``store/memory.py`` is the in-memory store for unit tests. All pass ``tests/store/``.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Self

from anypod import jobs, types
from anypod.store.tenancy import TenancyStore

log = logging.getLogger(__name__)


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
    def from_rows(cls, rows: Iterable[tuple[str, int, int | None]]) -> Counts:
        """From ``(status, count, retried)`` rows, one per status."""
        rows = list(rows)
        by = {status: n for status, n, _ in rows}
        return cls(
            in_queue=by.get(jobs.S.IN_QUEUE, 0),
            in_progress=by.get(jobs.S.IN_PROGRESS, 0),
            completed=by.get(jobs.S.COMPLETED, 0),
            failed=by.get(jobs.S.FAILED, 0),
            cancelled=by.get(jobs.S.CANCELLED, 0),
            timed_out=by.get(jobs.S.TIMED_OUT, 0),
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


class Outage:
    """What a store knows of its database being unavailable: the latest failure, kept until a
    success clears it, and logged as ONE line at most every ``every`` seconds (with a count of
    the failures in between), never a traceback per request. Safe to call from any thread."""

    def __init__(
        self, database: str, *, every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.database = database
        self.reason: str | None = None
        self._every = every
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    def failed(self, exc: BaseException) -> str:
        """Record a failure, log it if no line went out lately; returns the reason."""
        self.reason = reason = f"{self.database} is unavailable: {type(exc).__name__}: {exc}"
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._every:
            self._unlogged += 1
            return reason
        more = (
            f" (and {self._unlogged} more failures since the last report)" if self._unlogged else ""
        )
        log.warning("%s%s", reason, more)
        self._logged_at, self._unlogged = now, 0
        return reason

    def recovered(self) -> None:
        """A success: forget the failure (one line when there was one)."""
        if self.reason is not None:
            self.reason = None
            log.info("%s is available again", self.database)


class Store(TenancyStore):
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
        """Insert a queued job. Durable when this returns; a duplicate id is a Conflict."""

    @abc.abstractmethod
    async def submit_many(self, new: Sequence[jobs.NewJob]) -> list[jobs.Job]:
        """Insert queued jobs in one transaction: all of them, or (on a Conflict) none."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> jobs.Job | None: ...

    @abc.abstractmethod
    async def list_jobs(self, query: JobQuery) -> list[jobs.Job]:
        """Newest first."""

    @abc.abstractmethod
    async def counts(self, endpoint: str, owners: Sequence[str] | None = None) -> Counts:
        """Jobs by status (of the owners in ``owners``, when given)."""

    @abc.abstractmethod
    async def end(self, job_id: str, end: jobs.End) -> jobs.Job | None:
        """End an active job (result, cancel); None, and nothing changed, if it was not."""

    async def end_many(self, ends: Sequence[tuple[str, jobs.End]]) -> list[jobs.Job | None]:
        """:meth:`end` for each, in one transaction where the store has them; each job after,
        or None where its end did not apply."""
        return [await self.end(job_id, end) for job_id, end in ends]

    @abc.abstractmethod
    async def retry(self, job_id: str, retry: jobs.Retry) -> jobs.Job | None:
        """Re-queue a FAILED or TIMED_OUT job (same id and input) and drop its stream chunks;
        None, and nothing changed, for a job in any other state."""

    @abc.abstractmethod
    async def purge_queue(
        self, endpoint: str, end: jobs.End, owners: Sequence[str] | None = None
    ) -> list[str | None]:
        """End every IN_QUEUE job of an endpoint (whose owner is in ``owners``, when given)
        with ``end``; return the owner of each."""

    # --- worker side -------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim(self, endpoint: str, limit: int, claim: jobs.Claim) -> list[jobs.Job]:
        """Apply ``claim`` to up to ``limit`` queued jobs of ``endpoint`` whose TTL has not
        passed: highest priority first, then oldest. Each claim counts as an attempt."""

    @abc.abstractmethod
    async def release(self, job_ids: Sequence[str], release: jobs.Release) -> list[str]:
        """Apply ``release`` to those of the jobs its holder holds; return their ids."""

    @abc.abstractmethod
    async def record_progress(
        self, job_id: str, holder: jobs.Holder, output: types.RawJSON
    ) -> bool:
        """Store a progress update on a job ``holder`` holds; False (nothing changed) if not."""

    @abc.abstractmethod
    async def append_stream(self, job_id: str, holder: jobs.Holder, output: types.RawJSON) -> bool:
        """Append one ``/stream`` chunk to a job ``holder`` holds; False if it does not."""

    @abc.abstractmethod
    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        """Return and remove the chunks not yet returned, oldest first."""

    @abc.abstractmethod
    async def renew_leases(self, worker: WorkerInfo, lease_until: float) -> list[str]:
        """Record a ping (a worker is known by endpoint and id). Extend the leases of the
        listed jobs the worker holds.

        Returns the listed ids the worker should stop: jobs that are terminal, unknown, or now
        belong to another worker.
        """

    @abc.abstractmethod
    async def holders(self, endpoint: str) -> set[str]:
        """The workers holding an IN_PROGRESS job of ``endpoint``."""

    @abc.abstractmethod
    async def workers(self, endpoint: str | None, seen_since: float) -> list[WorkerInfo]:
        """Workers that pinged since ``seen_since`` (of ``endpoint``, or all), by id."""

    # --- sweeping ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        """Active jobs whose TTL, execution deadline or lease has passed."""

    @abc.abstractmethod
    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Job] | None:
        """Re-decide :func:`jobs.overdue` on the job as it is now, atomically, and apply it.
        Returns the job before and after, or None when nothing was due any more."""

    @abc.abstractmethod
    async def purge_finished(self, now: float) -> int:
        """Delete finished jobs (and their chunks) whose retention window has passed, unless
        a webhook delivery is still pending."""

    @abc.abstractmethod
    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        """Claim finished jobs with a pending webhook due now (hidden until lease_until)."""

    @abc.abstractmethod
    async def webhook_attempted(self, job_id: str, attempt: jobs.WebhookAttempt) -> None:
        """Record a delivery attempt: one more attempt, the new state and next due time."""
