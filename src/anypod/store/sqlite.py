"""SQLite store: the embedded default. WAL mode, one writer thread, group commit.

Every write runs on the connection's own thread (:mod:`store.sqlite_connection`). A lookup by
primary key (``/status`` polls) is read on the event loop from a second connection: in WAL
mode a reader never waits for the writer, and ~20 us there costs less than two thread hops.
What the store does is :class:`SQLStore`'s.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TypeVar

from anypod import errors, jobs
from anypod.store import migrations, sealing, sql
from anypod.store.sql_store import Decide, SQLStore, Step
from anypod.store.sqlite_connection import BUSY_TIMEOUT, SQLiteConnection

T = TypeVar("T")
LOOP_READ_BYTES = 256 * 1024  # a job this small is read on the event loop (~tens of us)
PING_TIMEOUT = 2.0  # beyond the busy timeout: the writer's thread is stuck (a stalled disk)
PROBE_BYTES = 8192  # spans new pages, so a full database (or disk) fails the probe
WRITE_PROBE = (
    "INSERT OR REPLACE INTO worker_tokens (token_hash, endpoint, created_at)"
    " VALUES ('anypod:write-probe', zeroblob(?), 0)",
    "DELETE FROM worker_tokens WHERE token_hash = 'anypod:write-probe'",
)


class SQLiteStore(SQLStore):
    dialect = sql.SQLITE
    q = sql.for_dialect(sql.SQLITE.name)

    def __init__(
        self,
        path: str,
        *,
        migrate: bool = True,
        synchronous: str = "NORMAL",
        busy_timeout: float = BUSY_TIMEOUT,
        keys: sealing.Keyring = sealing.PLAIN,
    ) -> None:
        self.path = path
        self.keys = keys
        self._migrate = migrate
        self._db = SQLiteConnection(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._db.start()
        try:
            await self._db.run(self._prepare_schema)
        except BaseException:
            self._db.stop()
            raise
        self._reader = _reader(self.path)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._db.stop()

    async def ping(self) -> None:
        """Every statement takes the write lock, so this fails while another process holds it.
        A full disk still lets reads through: after a write failed, the ping writes too (a row
        in and out again in one transaction, so the file does not grow), and passes only when
        that commits. Unanswered after ``PING_TIMEOUT`` (a stalled disk, a lock held past the
        busy timeout): down."""
        try:
            async with asyncio.timeout(PING_TIMEOUT + self._db.busy_timeout):
                await self._db.run(self._probe)
        except TimeoutError:
            raise errors.StoreUnavailable(f"sqlite:///{self.path} did not answer") from None

    def _probe(self, conn: sqlite3.Connection) -> None:
        conn.execute("SELECT 1").fetchone()
        if self._db.outage.reason is not None:
            insert, delete = WRITE_PROBE
            conn.execute(insert, (PROBE_BYTES,))
            conn.execute(delete)

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        if self._migrate:
            _apply_pending(conn)
        migrations.check(self.dialect.name, schema_version(conn), f"sqlite:///{self.path}")

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        return await self._db.run(_apply_pending)

    # --- primitives --------------------------------------------------------------------------

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """For writes that may hit a unique key (the hot reads go to the thread directly)."""
        try:
            return await self._db.run(op)
        except sqlite3.IntegrityError as exc:
            raise errors.Conflict(f"duplicate key: {exc}") from exc

    async def _fetch(
        self, statement: str, args: Sequence[object], *, bulk: bool = False
    ) -> list[sql.Row]:
        return await self._db.run(lambda conn: conn.execute(statement, args).fetchall())

    async def _fetchrow(self, statement: str, args: Sequence[object]) -> sql.Row | None:
        row: sql.Row | None = await self._db.run(
            lambda conn: conn.execute(statement, args).fetchone()
        )
        return row

    async def _lookup(self, job_id: str) -> sql.Row | None:
        """On the event loop when the job is small (a large one, or none: the thread)."""
        if self._reader is not None:
            try:
                args = (job_id, LOOP_READ_BYTES)
                row: sql.Row | None = self._reader.execute(self.q.GET_SMALL, args).fetchone()
                if row is not None:
                    return row
            except sqlite3.Error:
                pass  # busy or failing: the writer's thread waits, retries and reports it
        return await self._fetchrow(self.q.GET, (job_id,))

    async def _read_small(self, statement: str, args: Sequence[object]) -> sql.Row | None:
        """On the event loop (a key or token row is small); busy or failing: the thread."""
        if self._reader is not None:
            try:
                row: sql.Row | None = self._reader.execute(statement, args).fetchone()
                return row
            except sqlite3.Error:
                pass
        return await self._fetchrow(statement, args)

    # --- credentials changed by another process (the CLI) ------------------------------------

    @property
    def _sidecar(self) -> str | None:
        """``<database>-credentials``: one byte longer after every change of keys or tokens."""
        if not self.path or self.path == ":memory:" or self.path.startswith("file:"):
            return None
        return f"{self.path}-credentials"

    async def announce_credentials(self) -> None:
        if self._sidecar is not None:
            with open(self._sidecar, "ab") as sidecar:
                sidecar.write(b".")

    def credentials_version(self) -> object | None:
        """The sidecar's size and time (a stat: ~1 µs, where a read of a key is ~30)."""
        if self._sidecar is None:
            return None
        try:
            found = os.stat(self._sidecar)
        except FileNotFoundError:
            return (0, 0)
        except OSError:
            return None
        return (found.st_size, found.st_mtime_ns)

    async def _execute(self, statement: str, args: Sequence[object], *, bulk: bool = False) -> int:
        return await self._run(lambda conn: conn.execute(statement, args).rowcount)

    async def _execute_many(self, statement: str, args: Sequence[Sequence[object]]) -> None:
        await self._run(lambda conn: conn.executemany(statement, args))

    async def _script(self, steps: Sequence[Step]) -> list[list[sql.Row]]:
        return await self._run(lambda conn: [conn.execute(s, a).fetchall() for s, a in steps])

    async def _locked(
        self, job_id: str, decide: Decide
    ) -> tuple[jobs.Job, list[list[sql.Row]]] | None:
        def op(conn: sqlite3.Connection) -> tuple[jobs.Job, list[list[sql.Row]]] | None:
            row = conn.execute(self.q.GET_FOR_UPDATE, (job_id,)).fetchone()
            if row is None:
                return None
            job = sql.row_to_job(row, self.keys)
            return job, [conn.execute(s, a).fetchall() for s, a in decide(job)]

        return await self._run(op)


def _reader(path: str) -> sqlite3.Connection | None:
    """A read-only connection for lookups on the event loop; None where one cannot be had
    (an in-memory database is the writer's alone)."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    try:
        uri = f"file:{urllib.parse.quote(path)}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 0")  # never block the loop: fall back instead
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        return None
    return conn


def _apply_pending(conn: sqlite3.Connection) -> list[int]:
    done = []
    for migration in migrations.pending(SQLiteStore.dialect.name, schema_version(conn)):
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {migration.version}")
        done.append(migration.version)
    return done


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """Split a migration into statements: a trigger's body keeps its semicolons."""
    found, pending = [], ""
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            found.append(pending.strip().rstrip(";").strip())
            pending = ""
    return [s for s in found if s] + ([pending.strip()] if pending.strip() else [])
