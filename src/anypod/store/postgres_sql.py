"""The SQL of the PostgreSQL store, and the row codec. Statements only; no I/O here.

Each hot-path operation is ONE statement (CTEs where a change touches two tables), so it runs
as an implicit transaction in one round trip: no BEGIN/COMMIT round trips on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anypod import jobs
from anypod.store import base

S = jobs.JobStatus
COLUMNS = (
    "seq, id, endpoint, status, input, output, error, webhook, s3_config, execution_timeout_ms, "
    "ttl_ms, low_priority, owner, worker_id, attempts, max_attempts, retention_ms, created_at, "
    "expires_at, started_at, finished_at, lease_expires_at, stop_pod, webhook_attempts"
)
ACTIVE = "('IN_QUEUE', 'IN_PROGRESS')"
_PENDING_WEBHOOK = "CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END"

# --- schema versions ---------------------------------------------------------------------------

ADVISORY_LOCK_KEY = 0x616E79706F64  # "anypod": serialises migrations across replicas
SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS anypod_schema (version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)
SCHEMA_EXISTS = "SELECT to_regclass('anypod_schema') IS NOT NULL"
CURRENT_VERSION = "SELECT COALESCE(MAX(version), 0) FROM anypod_schema"
RECORD_VERSION = "INSERT INTO anypod_schema (version, name) VALUES ($1, $2)"
LOCK = "SELECT pg_advisory_xact_lock($1)"

# --- client side -------------------------------------------------------------------------------

SUBMIT = (
    f"INSERT INTO jobs (status, {base.INSERT_COLUMNS}) VALUES ('IN_QUEUE', "
    + ", ".join(f"${i}" for i in range(1, base.INSERT_COLUMNS.count(",") + 2))
    + ")"
)
GET = f"SELECT {COLUMNS} FROM jobs WHERE id = $1"
GET_FOR_UPDATE = f"SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
COUNTS = (
    "SELECT status, COUNT(*), COUNT(*) FILTER (WHERE attempts > 1) FROM jobs WHERE endpoint = $1"
    " GROUP BY status"
)
# $1 status, $2 output, $3 error, $4 now, $5 stop_pod, $6 id
END = (
    f"UPDATE jobs SET status = $1, output = COALESCE($2, output), error = $3, finished_at = $4,"
    f" purge_at = $4 + retention_ms / 1000::float8, stop_pod = $5, lease_expires_at = NULL,"
    f" webhook_state = {_PENDING_WEBHOOK}, webhook_next_at = $4"
    f" WHERE id = $6 AND status IN {ACTIVE} RETURNING {COLUMNS}"
)
RETRY = (
    "WITH retried AS (UPDATE jobs SET status = 'IN_QUEUE', output = NULL, error = NULL,"
    " worker_id = NULL, started_at = NULL, finished_at = NULL, purge_at = NULL,"
    " lease_expires_at = NULL, deadline_at = NULL, attempts = 0, stop_pod = false,"
    " webhook_state = NULL, webhook_attempts = 0, webhook_next_at = NULL,"
    " expires_at = $1 + ttl_ms / 1000::float8"
    f" WHERE id = $2 AND status IN ('FAILED', 'TIMED_OUT') RETURNING {COLUMNS}),"
    " chunks AS (DELETE FROM stream_chunks WHERE job_id = $2 AND EXISTS (SELECT 1 FROM retried))"
    " SELECT * FROM retried"
)
PURGE_QUEUE = (
    "UPDATE jobs SET status = 'CANCELLED', finished_at = $1,"
    " purge_at = $1 + retention_ms / 1000::float8,"
    f" webhook_state = {_PENDING_WEBHOOK}, webhook_next_at = $1"
    " WHERE endpoint = $2 AND status = 'IN_QUEUE'"
)

# --- worker side -------------------------------------------------------------------------------

# $1 worker, $2 now, $3 lease_until, $4 endpoint, $5 limit
CLAIM = (
    "UPDATE jobs SET status = 'IN_PROGRESS', worker_id = $1, attempts = attempts + 1,"
    " started_at = $2, lease_expires_at = $3,"
    " deadline_at = $2 + execution_timeout_ms / 1000::float8"
    " WHERE seq IN (SELECT seq FROM jobs WHERE endpoint = $4 AND status = 'IN_QUEUE'"
    " AND expires_at > $2 ORDER BY priority DESC, seq LIMIT $5 FOR UPDATE SKIP LOCKED)"
    f" RETURNING priority, {COLUMNS}"
)
PROGRESS = "UPDATE jobs SET output = $1 WHERE id = $2 AND status = 'IN_PROGRESS'"
APPEND_STREAM = (
    "WITH job AS (UPDATE jobs SET stream_seq = stream_seq + 1"
    f" WHERE id = $1 AND status IN {ACTIVE} RETURNING stream_seq)"
    " INSERT INTO stream_chunks (job_id, n, output) SELECT $1, stream_seq, $2 FROM job"
)
DRAIN_STREAM = "DELETE FROM stream_chunks WHERE job_id = $1 RETURNING n, output"
# $1 id, $2 endpoint, $3 last_seen, $4 job_ids, $5 gpu, $6 version, $7 unhealthy, $8 lease_until
RENEW_LEASES = (
    "WITH seen AS (INSERT INTO workers (id, endpoint, last_seen, job_ids, gpu, version, unhealthy)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET"
    " endpoint = excluded.endpoint, last_seen = excluded.last_seen, job_ids = excluded.job_ids,"
    " gpu = excluded.gpu, version = excluded.version, unhealthy = excluded.unhealthy),"
    " renewed AS (UPDATE jobs SET lease_expires_at = $8 WHERE id = ANY($4::text[])"
    " AND worker_id = $1 AND status = 'IN_PROGRESS' RETURNING id)"
    " SELECT id FROM renewed"
)
WORKERS = (
    "SELECT id, endpoint, last_seen, job_ids, gpu, version, unhealthy FROM workers"
    " WHERE last_seen >= $1 AND ($2::text IS NULL OR endpoint = $2) ORDER BY id"
)

# --- sweeping ----------------------------------------------------------------------------------

OVERDUE = (
    f"SELECT {COLUMNS} FROM jobs WHERE seq IN ("
    "SELECT seq FROM jobs WHERE status = 'IN_PROGRESS' AND lease_expires_at <= $1"
    " UNION SELECT seq FROM jobs WHERE status = 'IN_PROGRESS' AND deadline_at <= $1"
    f" UNION SELECT seq FROM jobs WHERE status IN {ACTIVE} AND expires_at <= $1"
    " LIMIT $2)"
)
REQUEUE = (
    "UPDATE jobs SET status = 'IN_QUEUE', worker_id = NULL, started_at = NULL,"
    " lease_expires_at = NULL, deadline_at = NULL, output = NULL"
    f" WHERE id = $1 AND status = 'IN_PROGRESS' RETURNING {COLUMNS}"
)
PURGE_FINISHED = (
    "WITH gone AS (DELETE FROM jobs WHERE purge_at <= $1"
    " AND (webhook_state IS NULL OR webhook_state != 'pending') RETURNING id),"
    " chunks AS (DELETE FROM stream_chunks WHERE job_id IN (SELECT id FROM gone))"
    " SELECT COUNT(*) FROM gone"
)
DUE_WEBHOOKS = (
    "UPDATE jobs SET webhook_next_at = $1 WHERE seq IN (SELECT seq FROM jobs"
    " WHERE webhook_state = 'pending' AND webhook_next_at <= $2 ORDER BY webhook_next_at"
    f" LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
)
WEBHOOK_DONE = (
    "UPDATE jobs SET webhook_state = $1, webhook_attempts = webhook_attempts + 1,"
    " webhook_next_at = $2 WHERE id = $3"
)

# --- credentials -------------------------------------------------------------------------------

ADD_WORKER_TOKEN = (
    "INSERT INTO worker_tokens (token_hash, endpoint, created_at) VALUES ($1, $2, $3)"
)
WORKER_TOKEN = "SELECT endpoint FROM worker_tokens WHERE token_hash = $1"


def list_jobs(query: base.JobQuery) -> tuple[str, list[object]]:
    """The statement and parameters for one page of the queue browser."""
    clauses: list[str] = []
    params: list[object] = []
    for column, value in (
        ("endpoint", query.endpoint),
        ("owner", query.owner),
        ("status", query.status.value if query.status else None),
        ("seq <", query.before_seq),
    ):
        if value is not None:
            params.append(value)
            op = "" if " " in column else " ="
            clauses.append(f"{column}{op} ${len(params)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(query.limit)
    return f"SELECT {COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ${len(params)}", params


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
        policy=jobs.Policy(execution_timeout_ms=row[9], ttl_ms=row[10], low_priority=row[11]),
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
        stop_pod=row[22],
        webhook_attempts=row[23],
    )


def row_to_worker(row: Sequence[Any]) -> base.WorkerInfo:
    return base.WorkerInfo(
        id=row[0],
        endpoint=row[1],
        last_seen=row[2],
        job_ids=tuple(row[3]),
        gpu=row[4],
        version=row[5],
        unhealthy=row[6],
    )


def row_count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])
