"""The store on a SQL database: every :class:`base.Store` method once, as statements of
:mod:`store.sql`, over six primitives that the SQLite and PostgreSQL backends provide.

A backend only connects, runs statements, keeps transactions and maps its driver's errors:
a duplicate key becomes :class:`errors.Conflict`, an unreachable database
:class:`errors.StoreUnavailable`. Job values pass the row codec of :mod:`store.sql` with the
store's ``keys``, sealed at rest when that keyring has a current key (:mod:`store.sealing`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

from anypod import errors, jobs, types
from anypod.store import base, sealing, sql
from anypod.store.sql_tenancy import SQLTenancy

Step = sql.Step
Decide = Callable[[jobs.Job], Sequence[Step]]


class SQLStore(SQLTenancy, base.Store):
    dialect: sql.Dialect
    q: sql.Statements  # the statements of that dialect
    keys: sealing.Keyring = sealing.PLAIN  # seals and opens job values (a backend sets it)

    # --- primitives --------------------------------------------------------------------------

    @abc.abstractmethod
    async def _fetch(
        self, statement: str, args: Sequence[object], *, bulk: bool = False
    ) -> list[sql.Row]:
        """The statement's rows. ``bulk``: it may touch any number of rows (a purge), so a
        backend with a deadline per call gives it the long one."""

    @abc.abstractmethod
    async def _fetchrow(self, statement: str, args: Sequence[object]) -> sql.Row | None: ...

    async def _lookup(self, job_id: str) -> sql.Row | None:
        """A job's row by id, the hottest read (``/status`` polls): a backend may serve the
        small ones on the event loop itself."""
        return await self._fetchrow(self.q.GET, (job_id,))

    async def _read_small(self, statement: str, args: Sequence[object]) -> sql.Row | None:
        """One small row read on a request's path (a key, a token): a backend may serve it
        on the event loop itself."""
        return await self._fetchrow(statement, args)

    @abc.abstractmethod
    async def _execute(self, statement: str, args: Sequence[object], *, bulk: bool = False) -> int:
        """Run a statement; return how many rows it changed (``bulk`` as for :meth:`_fetch`)."""

    @abc.abstractmethod
    async def _execute_many(self, statement: str, args: Sequence[Sequence[object]]) -> None:
        """One statement for each parameter tuple, in one transaction."""

    @abc.abstractmethod
    async def _script(self, steps: Sequence[Step]) -> list[list[sql.Row]]:
        """The steps in one transaction; each step's rows."""

    @abc.abstractmethod
    async def _locked(
        self, job_id: str, decide: Decide
    ) -> tuple[jobs.Job, list[list[sql.Row]]] | None:
        """In one transaction: read the job (locking its row), ``decide`` the steps from it,
        run them. Returns the job as read and each step's rows; None for an unknown job."""

    # --- client side -------------------------------------------------------------------------

    async def submit(self, new: jobs.NewJob) -> jobs.Job:
        try:
            await self._execute(self.q.SUBMIT, sql.insert_values(new, self.keys))
        except errors.Conflict as exc:
            raise errors.Conflict(f"job id {new.id} already exists") from exc
        return new.queued()

    async def submit_many(self, new: Sequence[jobs.NewJob]) -> list[jobs.Job]:
        if new:
            await self._execute_many(self.q.SUBMIT, [sql.insert_values(n, self.keys) for n in new])
        return [n.queued() for n in new]

    async def get(self, job_id: str) -> jobs.Job | None:
        return self._job(await self._lookup(job_id))

    async def list_jobs(self, query: base.JobQuery) -> list[jobs.Job]:
        statement, params = self.q.list_jobs(query)
        return [sql.row_to_job(r, self.keys) for r in await self._fetch(statement, params)]

    async def counts(self, endpoint: str, owners: Sequence[str] | None = None) -> base.Counts:
        if owners is None:
            rows = await self._fetch(self.q.COUNTS, (endpoint,))
        else:
            args = (endpoint, self.dialect.encode_ids(owners))
            rows = await self._fetch(self.q.COUNTS_OF, args)
        return base.Counts.from_rows((r[0], r[1], r[2]) for r in rows)

    async def end(self, job_id: str, end: jobs.End) -> jobs.Job | None:
        return self._job(await self._fetchrow(*self._end_step(job_id, end)))

    async def end_many(self, ends: Sequence[tuple[str, jobs.End]]) -> list[jobs.Job | None]:
        if len(ends) < 2:
            return await super().end_many(ends)
        together = sql.end_many_values(ends, self.keys) if self.dialect.unnest else None
        if together is not None:  # one statement, not one round trip per job
            rows = await self._fetch(self.q.END_HELD_MANY, together)
            ended = {job.id: job for job in (sql.row_to_job(r, self.keys) for r in rows)}
            return [ended.get(job_id) for job_id, _ in ends]
        results = await self._script([self._end_step(job_id, end) for job_id, end in ends])
        return [self._job(rows[0] if rows else None) for rows in results]

    def _end_step(self, job_id: str, end: jobs.End) -> Step:
        values = sql.end_values(end, self.keys, job_id)
        if end.holder is None:
            return self.q.END, (*values, job_id)
        return self.q.END_HELD, (*values, job_id, *sql.holder_values(end.holder))

    async def retry(self, job_id: str, retry: jobs.Retry) -> jobs.Job | None:
        def steps(job: jobs.Job) -> list[Step]:
            if job.status not in retry.SOURCES:
                return []
            return [(self.q.RETRY, (retry.at, job_id)), (self.q.DELETE_STREAM, (job_id,))]

        done = await self._locked(job_id, steps)
        return None if done is None else self._job(_first_row(done[1]))

    async def purge_queue(
        self, endpoint: str, end: jobs.End, owners: Sequence[str] | None = None
    ) -> list[str | None]:
        args: tuple[object, ...] = (*sql.end_values(end, self.keys, None), endpoint)
        statement = self.q.PURGE_QUEUE
        if owners is not None:
            args, statement = (*args, self.dialect.encode_ids(owners)), self.q.PURGE_QUEUE_OF
        return [r[0] for r in await self._fetch(statement, args, bulk=True)]

    # --- worker side -------------------------------------------------------------------------

    async def claim(self, endpoint: str, limit: int, claim: jobs.Claim) -> list[jobs.Job]:
        args = (claim.worker_id, claim.started_at, claim.lease_expires_at, endpoint, limit)
        return sql.claimed_in_order(await self._fetch(self.q.CLAIM, args), self.keys)

    async def release(self, job_ids: Sequence[str], release: jobs.Release) -> list[str]:
        args = (self.dialect.encode_ids(job_ids), *sql.holder_values(release.holder))
        return [r[0] for r in await self._fetch(self.q.RELEASE, args)]

    async def record_progress(
        self, job_id: str, holder: jobs.Holder, output: types.RawJSON
    ) -> bool:
        args = sql.progress_values(job_id, output, holder, self.keys)
        return await self._execute(self.q.PROGRESS, args) == 1

    async def append_stream(self, job_id: str, holder: jobs.Holder, output: types.RawJSON) -> bool:
        args = sql.stream_values(job_id, output, holder, self.keys)
        return await self._execute(self.q.APPEND_STREAM, args) == 1

    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        rows = await self._fetch(self.q.DRAIN_STREAM, (job_id,))
        return sql.drained(job_id, rows, self.keys)

    async def renew_leases(self, worker: base.WorkerInfo, lease_until: float) -> list[str]:
        w, ids = worker, self.dialect.encode_ids(worker.job_ids)
        seen = (w.id, w.endpoint, w.last_seen, ids, w.gpu, w.version, w.unhealthy)
        steps: list[Step] = [(self.q.UPSERT_WORKER, seen)]
        if w.job_ids:
            steps.append((self.q.RENEW_LEASES, (lease_until, ids, w.id, w.endpoint)))
        results = await self._script(steps)
        mine = {r[0] for r in results[1]} if w.job_ids else set()
        return [j for j in w.job_ids if j not in mine]

    async def holders(self, endpoint: str) -> set[str]:
        return {r[0] for r in await self._fetch(self.q.HOLDERS, (endpoint,))}

    async def workers(self, endpoint: str | None, seen_since: float) -> list[base.WorkerInfo]:
        rows = await self._fetch(self.q.WORKERS, (seen_since, endpoint))
        return [sql.row_to_worker(r, self.dialect) for r in rows]

    # --- sweeping ----------------------------------------------------------------------------

    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        rows = await self._fetch(self.q.OVERDUE, (now, limit))
        return [sql.row_to_job(r, self.keys) for r in rows]

    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Job] | None:
        def steps(job: jobs.Job) -> list[Step]:
            move = jobs.overdue(job, now)
            if isinstance(move, jobs.End):
                return [(self.q.END, (*sql.end_values(move, self.keys, job_id), job_id))]
            if isinstance(move, jobs.Requeue):
                return [(self.q.REQUEUE, (job_id,))]
            return []

        done = await self._locked(job_id, steps)
        after = None if done is None else self._job(_first_row(done[1]))
        return None if done is None or after is None else (done[0], after)

    async def purge_finished(self, now: float) -> int:
        return len(await self._fetch(self.q.PURGE_FINISHED, (now,), bulk=True))

    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        rows = await self._fetch(self.q.DUE_WEBHOOKS, (lease_until, now, limit))
        return [sql.row_to_job(r, self.keys) for r in rows]

    async def webhook_attempted(self, job_id: str, attempt: jobs.WebhookAttempt) -> None:
        args = (attempt.state.value, attempt.next_at, job_id)
        await self._execute(self.q.WEBHOOK_ATTEMPTED, args)

    def _submit_values(self, new: jobs.NewJob) -> tuple[object, ...]:
        return sql.insert_values(new, self.keys)

    def _job(self, row: sql.Row | None) -> jobs.Job | None:
        return None if row is None else sql.row_to_job(row, self.keys)


def _first_row(results: list[list[sql.Row]]) -> sql.Row | None:
    """The row the first step returned (a move's RETURNING), if it moved anything."""
    return results[0][0] if results and results[0] else None
