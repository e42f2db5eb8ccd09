"""SQLite store: the embedded default. WAL mode, one writer thread, group commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from anypod import errors, jobs, types
from anypod.store import base, migrations
from anypod.store.sqlite_connection import SQLiteConnection

S = jobs.JobStatus
COLUMNS = (
    "seq, id, endpoint, status, input, output, error, webhook, s3_config, execution_timeout_ms, "
    "ttl_ms, low_priority, owner, worker_id, attempts, max_attempts, retention_ms, created_at, "
    "expires_at, started_at, finished_at, lease_expires_at, stop_pod, webhook_attempts"
)
ACTIVE = "('IN_QUEUE', 'IN_PROGRESS')"


def row_to_job(row: Sequence[Any]) -> jobs.Job:
    return jobs.Job(
        id=row[1],
        endpoint=row[2],
        status=S(row[3]),
        input=row[4],
        output=row[5],
        error=row[6],
        webhook=row[7],
        s3_config=row[8],
        policy=jobs.Policy(execution_timeout_ms=row[9], ttl_ms=row[10], low_priority=bool(row[11])),
        owner=row[12],
        worker_id=row[13],
        attempts=row[14],
        max_attempts=row[15],
        retention_ms=row[16],
        created_at=row[17],
        expires_at=row[18],
        started_at=row[19],
        finished_at=row[20],
        lease_expires_at=row[21],
        stop_pod=bool(row[22]),
        webhook_attempts=row[23],
    )


def _get(conn: sqlite3.Connection, job_id: str) -> jobs.Job | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row_to_job(row) if row else None


def _end(
    conn: sqlite3.Connection, job_id: str, result: base.Result, now: float, allowed: str = ACTIVE
) -> jobs.Job | None:
    """Move an active job to a terminal status; schedule its purge and webhook."""
    row = conn.execute(
        f"UPDATE jobs SET status = ?, output = COALESCE(?, output), error = ?, finished_at = ?,"
        f" purge_at = ? + retention_ms / 1000.0, stop_pod = ?, lease_expires_at = NULL,"
        f" webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END,"
        f" webhook_next_at = ? WHERE id = ? AND status IN {allowed} RETURNING {COLUMNS}",
        (result.status.value, result.output, result.error, now, now, result.stop_pod, now, job_id),
    ).fetchone()
    return row_to_job(row) if row else None


def _encode_error(message: str | None) -> bytes | None:
    return None if message is None else orjson.dumps(message)


class SQLiteStore(base.Store):
    dialect = "sqlite"

    def __init__(self, path: str, *, migrate: bool = True, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._migrate = migrate
        self._db = SQLiteConnection(path, synchronous=synchronous)

    async def open(self) -> None:
        self._db.start()
        try:
            await self._db.run(self._prepare_schema)
        except BaseException:
            self._db.stop()
            raise

    async def close(self) -> None:
        self._db.stop()

    async def ping(self) -> None:
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        if self._migrate:
            _apply_pending(conn)
        migrations.check(self.dialect, schema_version(conn), f"sqlite:///{self.path}")

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""
        return await self._db.run(_apply_pending)

    # --- client side -------------------------------------------------------------------------

    async def submit(self, new: jobs.NewJob) -> jobs.Job:
        values = base.insert_values(new)
        marks = ", ".join("?" * len(values))

        def insert(conn: sqlite3.Connection) -> jobs.Job:
            conn.execute(
                f"INSERT INTO jobs (status, {base.INSERT_COLUMNS}) VALUES ('IN_QUEUE', {marks})",
                values,
            )
            return new.queued()

        try:
            return await self._db.run(insert)
        except sqlite3.IntegrityError as exc:
            raise errors.Conflict(f"job id {new.id} already exists") from exc

    async def get(self, job_id: str) -> jobs.Job | None:
        return await self._db.run(lambda conn: _get(conn, job_id))

    async def list_jobs(self, query: base.JobQuery) -> list[jobs.Job]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("endpoint", query.endpoint),
            ("owner", query.owner),
            ("status", query.status.value if query.status else None),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.before_seq is not None:
            clauses.append("seq < ?")
            params.append(query.before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?"

        def select(conn: sqlite3.Connection) -> list[jobs.Job]:
            return [row_to_job(r) for r in conn.execute(sql, (*params, query.limit))]

        return await self._db.run(select)

    async def counts(self, endpoint: str) -> base.Counts:
        def count(conn: sqlite3.Connection) -> base.Counts:
            rows = conn.execute(
                "SELECT status, COUNT(*), SUM(attempts > 1) FROM jobs WHERE endpoint = ?"
                " GROUP BY status",
                (endpoint,),
            ).fetchall()
            return base.Counts.from_rows(rows)

        return await self._db.run(count)

    async def cancel(self, job_id: str, now: float) -> jobs.Job | None:
        def cancel(conn: sqlite3.Connection) -> jobs.Job | None:
            ended = _end(conn, job_id, base.Result(status=S.CANCELLED), now)
            return ended or _get(conn, job_id)

        return await self._db.run(cancel)

    async def retry(self, job_id: str, now: float) -> jobs.Job | None:
        def retry(conn: sqlite3.Connection) -> jobs.Job | None:
            row = conn.execute(
                "UPDATE jobs SET status = 'IN_QUEUE', output = NULL, error = NULL,"
                " worker_id = NULL, started_at = NULL, finished_at = NULL, purge_at = NULL,"
                " lease_expires_at = NULL, deadline_at = NULL, attempts = 0, stop_pod = 0,"
                " webhook_state = NULL, webhook_attempts = 0, webhook_next_at = NULL,"
                " expires_at = ? + ttl_ms / 1000.0"
                f" WHERE id = ? AND status IN ('FAILED', 'TIMED_OUT') RETURNING {COLUMNS}",
                (now, job_id),
            ).fetchone()
            if row is None:
                return _get(conn, job_id)
            conn.execute("DELETE FROM stream_chunks WHERE job_id = ?", (job_id,))
            return row_to_job(row)

        return await self._db.run(retry)

    async def purge_queue(self, endpoint: str, now: float) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET status = 'CANCELLED', finished_at = ?,"
                " purge_at = ? + retention_ms / 1000.0,"
                " webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END,"
                " webhook_next_at = ? WHERE endpoint = ? AND status = 'IN_QUEUE'",
                (now, now, now, endpoint),
            )
            return cur.rowcount

        return await self._db.run(purge)

    # --- worker side -------------------------------------------------------------------------

    async def claim(
        self, endpoint: str, worker_id: str, limit: int, now: float, lease_until: float
    ) -> list[jobs.Job]:
        def claim(conn: sqlite3.Connection) -> list[jobs.Job]:
            rows = conn.execute(
                "UPDATE jobs SET status = 'IN_PROGRESS', worker_id = ?, attempts = attempts + 1,"
                " started_at = ?, lease_expires_at = ?,"
                " deadline_at = ? + execution_timeout_ms / 1000.0"
                " WHERE seq IN (SELECT seq FROM jobs WHERE endpoint = ? AND status = 'IN_QUEUE'"
                " AND expires_at > ? ORDER BY priority DESC, seq LIMIT ?)"
                f" RETURNING priority, {COLUMNS}",
                (worker_id, now, lease_until, now, endpoint, now, limit),
            ).fetchall()
            rows.sort(key=lambda r: (-r[0], r[1]))
            return [row_to_job(r[1:]) for r in rows]

        return await self._db.run(claim)

    async def finish(self, job_id: str, result: base.Result, now: float) -> jobs.Job | None:
        return await self._db.run(lambda conn: _end(conn, job_id, result, now))

    async def record_progress(self, job_id: str, output: types.RawJSON) -> bool:
        def progress(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE jobs SET output = ? WHERE id = ? AND status = 'IN_PROGRESS'",
                (output, job_id),
            )
            return cur.rowcount == 1

        return await self._db.run(progress)

    async def append_stream(self, job_id: str, output: types.RawJSON) -> bool:
        def append(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "UPDATE jobs SET stream_seq = stream_seq + 1 WHERE id = ? AND status IN"
                f" {ACTIVE} RETURNING stream_seq",
                (job_id,),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT INTO stream_chunks (job_id, n, output) VALUES (?, ?, ?)",
                (job_id, row[0], output),
            )
            return True

        return await self._db.run(append)

    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        def drain(conn: sqlite3.Connection) -> list[types.RawJSON]:
            rows = conn.execute(
                "DELETE FROM stream_chunks WHERE job_id = ? RETURNING n, output", (job_id,)
            ).fetchall()
            return [output for _, output in sorted(rows)]

        return await self._db.run(drain)

    async def renew_leases(self, worker: base.WorkerInfo, lease_until: float) -> list[str]:
        def renew(conn: sqlite3.Connection) -> list[str]:
            _upsert_worker(conn, worker)
            if not worker.job_ids:
                return []
            marks = ",".join("?" * len(worker.job_ids))
            conn.execute(
                f"UPDATE jobs SET lease_expires_at = ? WHERE id IN ({marks})"
                " AND worker_id = ? AND status = 'IN_PROGRESS'",
                (lease_until, *worker.job_ids, worker.id),
            )
            mine = {
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM jobs WHERE id IN ({marks}) AND worker_id = ?"
                    " AND status = 'IN_PROGRESS'",
                    (*worker.job_ids, worker.id),
                )
            }
            return [j for j in worker.job_ids if j not in mine]

        return await self._db.run(renew)

    async def workers(self, endpoint: str | None, seen_since: float) -> list[base.WorkerInfo]:
        def select(conn: sqlite3.Connection) -> list[base.WorkerInfo]:
            sql = (
                "SELECT id, endpoint, last_seen, job_ids, gpu, version, unhealthy FROM workers"
                " WHERE last_seen >= ?"
            )
            params: tuple[Any, ...] = (seen_since,)
            if endpoint is not None:
                sql += " AND endpoint = ?"
                params += (endpoint,)
            return [
                base.WorkerInfo(
                    id=r[0],
                    endpoint=r[1],
                    last_seen=r[2],
                    job_ids=tuple(filter(None, r[3].split(","))),
                    gpu=r[4],
                    version=r[5],
                    unhealthy=r[6],
                )
                for r in conn.execute(sql, params)
            ]

        return await self._db.run(select)

    # --- sweeping ----------------------------------------------------------------------------

    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        def select(conn: sqlite3.Connection) -> list[jobs.Job]:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE status = 'IN_PROGRESS'"
                f" AND lease_expires_at <= ?1"
                f" UNION SELECT {COLUMNS} FROM jobs WHERE status = 'IN_PROGRESS'"
                f" AND deadline_at <= ?1"
                f" UNION SELECT {COLUMNS} FROM jobs WHERE status IN {ACTIVE} AND expires_at <= ?1"
                " LIMIT ?2",
                (now, limit),
            ).fetchall()
            return [row_to_job(r) for r in rows]

        return await self._db.run(select)

    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Outcome] | None:
        def apply(conn: sqlite3.Connection) -> tuple[jobs.Job, jobs.Outcome] | None:
            job = _get(conn, job_id)
            outcome = jobs.overdue_outcome(job, now) if job else None
            if job is None or outcome is None:
                return None
            if outcome.requeue:
                conn.execute(
                    "UPDATE jobs SET status = 'IN_QUEUE', worker_id = NULL, started_at = NULL,"
                    " lease_expires_at = NULL, deadline_at = NULL, output = NULL"
                    " WHERE id = ? AND status = 'IN_PROGRESS'",
                    (job_id,),
                )
                requeued = _get(conn, job_id)
                return (requeued, outcome) if requeued else None
            result = base.Result(status=outcome.status, error=_encode_error(outcome.error))
            ended = _end(conn, job_id, result, now)
            return (ended, outcome) if ended else None

        return await self._db.run(apply)

    async def purge_finished(self, now: float) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM jobs WHERE purge_at <= ? AND (webhook_state IS NULL OR"
                    " webhook_state != 'pending') RETURNING id",
                    (now,),
                )
            ]
            conn.executemany("DELETE FROM stream_chunks WHERE job_id = ?", [(i,) for i in ids])
            return len(ids)

        return await self._db.run(purge)

    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        def claim(conn: sqlite3.Connection) -> list[jobs.Job]:
            rows = conn.execute(
                "UPDATE jobs SET webhook_next_at = ? WHERE seq IN (SELECT seq FROM jobs WHERE"
                " webhook_state = 'pending' AND webhook_next_at <= ? LIMIT ?)"
                f" RETURNING {COLUMNS}",
                (lease_until, now, limit),
            ).fetchall()
            return [row_to_job(r) for r in rows]

        return await self._db.run(claim)

    async def webhook_done(self, job_id: str, *, delivered: bool, retry_at: float | None) -> None:
        state = "delivered" if delivered else ("pending" if retry_at is not None else "failed")

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jobs SET webhook_state = ?, webhook_attempts = webhook_attempts + 1,"
                " webhook_next_at = ? WHERE id = ?",
                (state, retry_at, job_id),
            )

        await self._db.run(record)

    # --- credentials -------------------------------------------------------------------------

    async def add_worker_token(self, endpoint: str, token_hash: str, now: float) -> None:
        await self._db.run(
            lambda conn: conn.execute(
                "INSERT INTO worker_tokens (token_hash, endpoint, created_at) VALUES (?, ?, ?)",
                (token_hash, endpoint, now),
            )
        )

    async def worker_token_endpoint(self, token_hash: str) -> str | None:
        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT endpoint FROM worker_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
            return row[0] if row else None

        return await self._db.run(select)


def _upsert_worker(conn: sqlite3.Connection, w: base.WorkerInfo) -> None:
    conn.execute(
        "INSERT INTO workers (id, endpoint, last_seen, job_ids, gpu, version, unhealthy)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint,"
        " last_seen = excluded.last_seen, job_ids = excluded.job_ids, gpu = excluded.gpu,"
        " version = excluded.version, unhealthy = excluded.unhealthy",
        (w.id, w.endpoint, w.last_seen, ",".join(w.job_ids), w.gpu, w.version, w.unhealthy),
    )


def _apply_pending(conn: sqlite3.Connection) -> list[int]:
    done = []
    for migration in migrations.pending(SQLiteStore.dialect, schema_version(conn)):
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {migration.version}")
        done.append(migration.version)
    return done


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """Split a migration into statements (they hold no semicolons inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
