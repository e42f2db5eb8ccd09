"""PostgreSQL store: the scale-out backend. An asyncpg pool, one statement per hot-path call;
what the store does is :class:`SQLStore`'s, with the statements of :mod:`store.sql`.

Claims take ``FOR UPDATE SKIP LOCKED`` on a partial index, so replicas never hand out a job
twice and a claim stays O(log n) in queue depth. Every driver error that means "the database
cannot be reached" (:func:`is_unavailable`) becomes :class:`errors.StoreUnavailable` in ONE
place, :meth:`PostgresStore._translated`; the pool then re-connects by itself when PostgreSQL is
back. See docs/postgres.md for the measurements behind these choices.

Every call has a deadline (waiting for a pooled connection, connecting, and its statements
together), so a silent network partition (packets dropped, nothing reset) answers
StoreUnavailable within seconds instead of hanging; a connection that missed its deadline is
terminated, never handed back to the pool half-way through a conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from anypod import errors, jobs
from anypod.store import migrations, sealing, sql
from anypod.store.base import Outage
from anypod.store.sql_store import Decide, SQLStore, Step

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = Any  # asyncpg ships no type hints
ADVISORY_LOCK_KEY = 0x616E79706F64  # "anypod": serialises migrations across replicas
SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS anypod_schema (version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
CONNECT_TIMEOUT = 2.0  # a new connection: TCP, TLS, startup and authentication
TIMEOUT = 3.0  # one store call: a pooled connection, then its statements (p99 is ~5 ms)
PING_TIMEOUT = 2.0  # /health says the store is down after this long without an answer
BULK_TIMEOUT = 60.0  # purges, which may touch any number of rows; each migration statement
IDLE_IN_TRANSACTION_MS = 10_000
"""The server rolls back a session idle this long inside a transaction. Ours never pause in
one, so this only ends the sessions of a client that vanished in a partition (it cannot say
goodbye), whose row locks would otherwise stay held until TCP keepalive notices (hours)."""
_DROPPED = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
_REFUSED = (
    asyncpg.exceptions.DeadlockDetectedError,  # two transactions locked rows in turn: retry
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
        connect_timeout: float = CONNECT_TIMEOUT,
        timeout: float = TIMEOUT,
        ping_timeout: float = PING_TIMEOUT,
        command_timeout: float = BULK_TIMEOUT,
        keys: sealing.Keyring = sealing.PLAIN,
    ) -> None:
        self.url = url
        self.keys = keys
        self._migrate = migrate
        self._min = min_connections
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._ping_timeout = ping_timeout
        self._command_timeout = command_timeout
        self._pool: Any = None
        self._outage = Outage(f"PostgreSQL at {redact(url)}")

    # --- connections -------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._translated():
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._min,
                max_size=self._max,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,  # any statement, even without a deadline
                reset=_keep_session,
                init=_session,
                server_settings={"application_name": "anypod"},
            )
        try:
            await self._connection_run(self._prepare_schema, timeout=None)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await pool.close()
            except Exception as exc:  # the server is gone: nothing left to release politely
                log.debug("closing the PostgreSQL pool: %s", exc)
                pool.terminate()

    async def ping(self) -> None:
        await self._connection_run(lambda c: c.fetchval("SELECT 1"), timeout=self._ping_timeout)

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
            raise errors.StoreUnavailable(self._outage.failed(exc)) from exc
        self._outage.recovered()

    async def _connection_run(
        self, op: Callable[[Connection], Awaitable[T]], *, timeout: float | None
    ) -> T:
        """Run ``op`` on a pooled connection (``op`` opens a transaction if it needs one),
        within ``timeout`` seconds for everything (None: each statement within the pool's
        ``command_timeout``). A connection that failed or ran out of time is terminated."""
        async with self._translated():
            pool = self._pool
            if pool is None:
                raise errors.StoreUnavailable("the PostgreSQL store is closed")
            conn, broken, deadline = None, True, asyncio.timeout(timeout)
            try:
                async with deadline:
                    conn = await pool.acquire()
                    result = await op(conn)
                broken = False
                return result
            except TimeoutError as exc:
                if deadline.expired():
                    raise TimeoutError(f"no answer within {timeout:g} s") from exc
                raise TimeoutError(str(exc) or "timed out connecting or in a statement") from exc
            except Exception as exc:
                broken = is_unavailable(exc)
                raise
            finally:
                if conn is not None:
                    await self._release(pool, conn, broken=broken)

    async def _release(self, pool: Any, conn: Connection, *, broken: bool) -> None:
        """Back to the pool; a broken connection (or one a cancelled call left mid-statement)
        terminated first, so nobody gets it half-way through a conversation."""
        if broken:
            conn.terminate()
        try:
            await pool.release(conn, timeout=self._connect_timeout)
        except Exception as exc:  # closing an expired connection to a vanished server
            log.debug("releasing a PostgreSQL connection: %s", exc)

    async def _in_transaction(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        async def run(conn: Connection) -> T:
            async with conn.transaction():
                return await op(conn)

        return await self._connection_run(run, timeout=self._timeout)

    # --- schema ------------------------------------------------------------------------------

    async def _prepare_schema(self, conn: Connection) -> None:
        if self._migrate:
            await _apply_pending(conn)
        migrations.check(self.dialect.name, await schema_version(conn), redact(self.url))

    def credentials_version(self) -> object | None:
        """Constant: changes reach every replica as a NOTIFY (``access.Credentials``)."""
        return 0

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        return await self._connection_run(_apply_pending, timeout=None)

    # --- primitives --------------------------------------------------------------------------

    def _deadline(self, bulk: bool) -> float:
        return self._command_timeout if bulk else self._timeout

    async def _fetch(
        self, statement: str, args: Sequence[object], *, bulk: bool = False
    ) -> list[sql.Row]:
        rows: list[sql.Row] = await self._connection_run(
            lambda c: c.fetch(statement, *args), timeout=self._deadline(bulk)
        )
        return rows

    async def _fetchrow(self, statement: str, args: Sequence[object]) -> sql.Row | None:
        row: sql.Row | None = await self._connection_run(
            lambda c: c.fetchrow(statement, *args), timeout=self._timeout
        )
        return row

    async def _execute(self, statement: str, args: Sequence[object], *, bulk: bool = False) -> int:
        status = await self._connection_run(
            lambda c: c.execute(statement, *args), timeout=self._deadline(bulk)
        )
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
            job = sql.row_to_job(row, self.keys)
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


async def _session(conn: Connection) -> None:
    """Each new connection: a transaction left idle (its client gone in a partition) ends in
    10 s instead of holding row locks until TCP notices. Set with ``SET`` rather than as a
    startup parameter, which PgBouncer refuses; where even that is refused, go without."""
    try:
        await conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
    except asyncpg.PostgresError as exc:
        log.info("idle_in_transaction_session_timeout not set: %s", exc)


async def _keep_session(conn: Connection) -> None:
    """Pool reset hook: our sessions hold no state worth resetting (only the SET made at
    connect; no LISTEN or session locks), so skip asyncpg's default reset query, a round trip
    on every release."""


async def _expire(pool: Any) -> None:
    """After a connection error, retire every pooled connection (they likely share the fate of
    the one that failed); the pool opens fresh ones on demand, so recovery needs no restart."""
    with contextlib.suppress(Exception):
        await pool.expire_connections()
