"""PostgreSQL store: the scale-out backend. asyncpg pool, one statement per hot-path call.

Claims take ``FOR UPDATE SKIP LOCKED`` on a partial index, so replicas never hand out a job
twice and a claim stays O(log n) in queue depth. Every driver error that means "the database
cannot be reached" (:func:`is_unavailable`) becomes :class:`errors.StoreUnavailable` in ONE
place, :meth:`PostgresStore._translated`; the pool then re-connects by itself when PostgreSQL is
back. See docs/postgres.md for the measurements behind these choices.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import orjson

from anypod import errors, jobs, types
from anypod.store import base, migrations
from anypod.store import postgres_sql as q

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = Any  # asyncpg ships no type hints
DIALECT = "postgres"
_DROPPED = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
_REFUSED = (
    asyncpg.exceptions.InsufficientResourcesError,  # e.g. too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, mid-failover
)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached now", not a bug or a conflict.

    Covers refused/reset sockets and connect timeouts (``OSError``, ``TimeoutError``), a
    connection lost mid-query, the server shutting down or starting up (SQLSTATE 08, 57), too
    many connections (53), a read-only standby (25006), and a closed or closing pool (plain
    ``InterfaceError``; its subclasses are client-side bugs such as bad parameter types).
    """
    if isinstance(exc, (OSError, *_DROPPED, *_REFUSED)):
        return True
    return type(exc) is asyncpg.InterfaceError


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


class PostgresStore(base.Store):
    dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = False,
        min_connections: int = 2,
        max_connections: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 60.0,
    ) -> None:
        self.url = url
        self._migrate = migrate
        self._min = min_connections
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: Any = None

    # --- connections -------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._translated():
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._min,
                max_size=self._max,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,  # a silent network drop ends, as a 503
                reset=_keep_session,
                server_settings={"application_name": "anypod"},
            )
        try:
            await self._connection_run(self._prepare_schema)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except Exception as exc:  # the server is gone: nothing left to release politely
                log.debug("closing the PostgreSQL pool: %s", exc)
                pool.terminate()

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """The one place driver connection errors become :class:`errors.StoreUnavailable`."""
        try:
            yield
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if self._pool is not None:
                await _expire(self._pool)
            raise errors.StoreUnavailable(
                f"PostgreSQL at {redact(self.url)} is unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    async def _connection_run(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``op`` on a pooled connection (``op`` opens a transaction if it needs one)."""
        async with self._translated():
            pool = self._pool
            if pool is None:
                raise errors.StoreUnavailable("the PostgreSQL store is closed")
            async with pool.acquire() as conn:
                return await op(conn)

    async def _in_transaction(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        async def run(conn: Connection) -> T:
            async with conn.transaction():
                return await op(conn)

        return await self._connection_run(run)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        return await self._connection_run(lambda conn: conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: object) -> Any:
        return await self._connection_run(lambda conn: conn.fetchrow(sql, *args))

    async def _fetchval(self, sql: str, *args: object) -> Any:
        return await self._connection_run(lambda conn: conn.fetchval(sql, *args))

    async def _execute(self, sql: str, *args: object) -> int:
        status = await self._connection_run(lambda conn: conn.execute(sql, *args))
        return q.row_count(status)

    # --- schema ------------------------------------------------------------------------------

    async def _prepare_schema(self, conn: Connection) -> None:
        if self._migrate:
            await _apply_pending(conn)
        migrations.check(self.dialect, await schema_version(conn), redact(self.url))

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        return await self._connection_run(_apply_pending)

    # --- client side -------------------------------------------------------------------------

    async def submit(self, new: jobs.NewJob) -> jobs.Job:
        try:
            await self._execute(q.SUBMIT, *base.insert_values(new))
        except asyncpg.UniqueViolationError as exc:
            raise errors.Conflict(f"job id {new.id} already exists") from exc
        return new.queued()

    async def get(self, job_id: str) -> jobs.Job | None:
        return _job(await self._fetchrow(q.GET, job_id))

    async def list_jobs(self, query: base.JobQuery) -> list[jobs.Job]:
        sql, params = q.list_jobs(query)
        return [q.row_to_job(r) for r in await self._fetch(sql, *params)]

    async def counts(self, endpoint: str) -> base.Counts:
        return base.Counts.from_rows(await self._fetch(q.COUNTS, endpoint))

    async def cancel(self, job_id: str, now: float) -> jobs.Job | None:
        ended = await self._end(job_id, base.Result(status=q.S.CANCELLED), now)
        return ended or await self.get(job_id)

    async def retry(self, job_id: str, now: float) -> jobs.Job | None:
        retried = _job(await self._fetchrow(q.RETRY, now, job_id))
        return retried or await self.get(job_id)

    async def purge_queue(self, endpoint: str, now: float) -> int:
        return await self._execute(q.PURGE_QUEUE, now, endpoint)

    # --- worker side -------------------------------------------------------------------------

    async def claim(
        self, endpoint: str, worker_id: str, limit: int, now: float, lease_until: float
    ) -> list[jobs.Job]:
        rows = await self._fetch(q.CLAIM, worker_id, now, lease_until, endpoint, limit)
        rows.sort(key=lambda r: (-r[0], r[1]))
        return [q.row_to_job(r[1:]) for r in rows]

    async def finish(self, job_id: str, result: base.Result, now: float) -> jobs.Job | None:
        return await self._end(job_id, result, now)

    async def _end(self, job_id: str, result: base.Result, now: float) -> jobs.Job | None:
        return await self._connection_run(lambda conn: _end(conn, job_id, result, now))

    async def record_progress(self, job_id: str, output: types.RawJSON) -> bool:
        return await self._execute(q.PROGRESS, output, job_id) == 1

    async def append_stream(self, job_id: str, output: types.RawJSON) -> bool:
        return await self._execute(q.APPEND_STREAM, job_id, output) == 1

    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        rows = await self._fetch(q.DRAIN_STREAM, job_id)
        return [output for _, output in sorted(rows)]

    async def renew_leases(self, worker: base.WorkerInfo, lease_until: float) -> list[str]:
        w = worker
        rows = await self._fetch(
            q.RENEW_LEASES,
            *(w.id, w.endpoint, w.last_seen, list(w.job_ids), w.gpu, w.version, w.unhealthy),
            lease_until,
        )
        mine = {r[0] for r in rows}
        return [j for j in worker.job_ids if j not in mine]

    async def workers(self, endpoint: str | None, seen_since: float) -> list[base.WorkerInfo]:
        return [q.row_to_worker(r) for r in await self._fetch(q.WORKERS, seen_since, endpoint)]

    # --- sweeping ----------------------------------------------------------------------------

    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        return [q.row_to_job(r) for r in await self._fetch(q.OVERDUE, now, limit)]

    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Outcome] | None:
        return await self._in_transaction(lambda conn: _apply_overdue(conn, job_id, now))

    async def purge_finished(self, now: float) -> int:
        return int(await self._fetchval(q.PURGE_FINISHED, now))

    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        return [q.row_to_job(r) for r in await self._fetch(q.DUE_WEBHOOKS, lease_until, now, limit)]

    async def webhook_done(self, job_id: str, *, delivered: bool, retry_at: float | None) -> None:
        state = "delivered" if delivered else ("pending" if retry_at is not None else "failed")
        await self._execute(q.WEBHOOK_DONE, state, retry_at, job_id)

    # --- credentials -------------------------------------------------------------------------

    async def add_worker_token(self, endpoint: str, token_hash: str, now: float) -> None:
        await self._execute(q.ADD_WORKER_TOKEN, token_hash, endpoint, now)

    async def worker_token_endpoint(self, token_hash: str) -> str | None:
        endpoint = await self._fetchval(q.WORKER_TOKEN, token_hash)
        return None if endpoint is None else str(endpoint)


def _job(row: Any) -> jobs.Job | None:
    return None if row is None else q.row_to_job(row)


async def _end(conn: Connection, job_id: str, result: base.Result, now: float) -> jobs.Job | None:
    """Move an active job to a terminal status; schedule its purge and webhook."""
    row = await conn.fetchrow(
        q.END, result.status.value, result.output, result.error, now, result.stop_pod, job_id
    )
    return _job(row)


async def _apply_overdue(
    conn: Connection, job_id: str, now: float
) -> tuple[jobs.Job, jobs.Outcome] | None:
    """Lock the row, re-decide with :func:`jobs.overdue_outcome`, apply (inside a transaction)."""
    job = _job(await conn.fetchrow(q.GET_FOR_UPDATE, job_id))
    outcome = jobs.overdue_outcome(job, now) if job else None
    if job is None or outcome is None:
        return None
    if outcome.requeue:
        after = _job(await conn.fetchrow(q.REQUEUE, job_id))
    else:
        error = None if outcome.error is None else orjson.dumps(outcome.error)
        after = await _end(conn, job_id, base.Result(status=outcome.status, error=error), now)
    return None if after is None else (after, outcome)


async def schema_version(conn: Connection) -> int:
    if not await conn.fetchval(q.SCHEMA_EXISTS):
        return 0
    return int(await conn.fetchval(q.CURRENT_VERSION))


async def _apply_pending(conn: Connection) -> list[int]:
    """Apply pending migrations in one transaction, serialised across replicas by an advisory
    lock: a replica that waited finds the work done and applies nothing."""
    async with conn.transaction():
        await conn.execute(q.LOCK, q.ADVISORY_LOCK_KEY)
        await conn.execute(q.SCHEMA_TABLE)
        done = []
        for migration in migrations.pending(DIALECT, await schema_version(conn)):
            await conn.execute(migration.sql)
            await conn.execute(q.RECORD_VERSION, migration.version, migration.name)
            done.append(migration.version)
        return done


async def _keep_session(conn: Connection) -> None:
    """Pool reset hook: our sessions hold no state worth resetting (no SET, LISTEN or session
    locks), so skip asyncpg's default reset query, a round trip on every release."""


async def _expire(pool: Any) -> None:
    """After a connection error, retire every pooled connection (they likely share the fate of
    the one that failed); the pool opens fresh ones on demand, so recovery needs no restart."""
    with contextlib.suppress(Exception):
        await pool.expire_connections()
