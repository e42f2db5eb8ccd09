"""PostgreSQL store: the scale-out backend. An asyncpg pool, one statement per hot-path call;
what the store does is :class:`SQLStore`'s, with the statements of :mod:`store.sql`.

Claims take ``FOR UPDATE SKIP LOCKED`` on a partial index, so replicas never hand out a job
twice and a claim stays O(log n) in queue depth. Every driver error that means "the database
cannot be reached" (:func:`is_unavailable`) becomes :class:`errors.StoreUnavailable` in ONE
place, :meth:`PostgresStore._translated`; the pool then re-connects by itself when PostgreSQL is
back. See docs/postgres.md for the measurements behind these choices.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from anypod import errors, jobs
from anypod.store import migrations, sql
from anypod.store.sql_store import Decide, SQLStore, Step

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = Any  # asyncpg ships no type hints
ADVISORY_LOCK_KEY = 0x616E79706F64  # "anypod": serialises migrations across replicas
SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS anypod_schema (version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
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


class PostgresStore(SQLStore):
    dialect = sql.POSTGRES
    q = sql.for_dialect(sql.POSTGRES.name)

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
        await self._fetchrow("SELECT 1", ())

    @contextlib.asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """The one place driver errors become domain errors: an unreachable database
        :class:`errors.StoreUnavailable`, a duplicate key :class:`errors.Conflict`."""
        try:
            yield
        except asyncpg.UniqueViolationError as exc:
            raise errors.Conflict(f"duplicate key: {exc}") from exc
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

    # --- schema ------------------------------------------------------------------------------

    async def _prepare_schema(self, conn: Connection) -> None:
        if self._migrate:
            await _apply_pending(conn)
        migrations.check(self.dialect.name, await schema_version(conn), redact(self.url))

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        return await self._connection_run(_apply_pending)

    # --- primitives --------------------------------------------------------------------------

    async def _fetch(self, statement: str, args: Sequence[object]) -> list[sql.Row]:
        rows: list[sql.Row] = await self._connection_run(lambda c: c.fetch(statement, *args))
        return rows

    async def _fetchrow(self, statement: str, args: Sequence[object]) -> sql.Row | None:
        row: sql.Row | None = await self._connection_run(lambda c: c.fetchrow(statement, *args))
        return row

    async def _execute(self, statement: str, args: Sequence[object]) -> int:
        status = await self._connection_run(lambda c: c.execute(statement, *args))
        return row_count(status)

    async def _execute_many(self, statement: str, args: Sequence[Sequence[object]]) -> None:
        await self._in_transaction(lambda c: c.executemany(statement, args))

    async def _script(self, steps: Sequence[Step]) -> list[list[sql.Row]]:
        async def run(conn: Connection) -> list[list[sql.Row]]:
            return [await conn.fetch(s, *a) for s, a in steps]

        return await self._in_transaction(run)

    async def _locked(
        self, job_id: str, decide: Decide
    ) -> tuple[jobs.Job, list[list[sql.Row]]] | None:
        async def run(conn: Connection) -> tuple[jobs.Job, list[list[sql.Row]]] | None:
            row = await conn.fetchrow(self.q.GET_FOR_UPDATE, job_id)
            if row is None:
                return None
            job = sql.row_to_job(row)
            return job, [await conn.fetch(s, *a) for s, a in decide(job)]

        return await self._in_transaction(run)


def row_count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


async def schema_version(conn: Connection) -> int:
    if not await conn.fetchval("SELECT to_regclass('anypod_schema') IS NOT NULL"):
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM anypod_schema"))


async def _apply_pending(conn: Connection) -> list[int]:
    """Apply pending migrations in one transaction, serialised across replicas by an advisory
    lock: a replica that waited finds the work done and applies nothing."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(SCHEMA_TABLE)
        done = []
        for migration in migrations.pending(PostgresStore.dialect.name, await schema_version(conn)):
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO anypod_schema (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
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
