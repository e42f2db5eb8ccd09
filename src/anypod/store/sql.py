"""Every SQL statement of the SQLite and PostgreSQL stores, written once, and the row codec.

Statements are written with PostgreSQL's numbered parameters (``$1``, ``$2``); a
:class:`Dialect` renders them for SQLite (``?1``, ``?2``: the same numbering) and fills in the
few places where the two databases differ: row locks, a float literal, casts, and "is in this
list" against an array parameter. Each hot-path operation is ONE statement, so it runs as an
implicit transaction in one round trip. The status guards come from :mod:`anypod.jobs` (each
move's ``SOURCES``), and each statement does what :func:`jobs.apply` does to a job.

Schema changes live in ``migrations/<dialect>/NNNN_name.sql``.

The row codec (the functions under "rows") seals job values on the way in and opens them on the
way out with the store's :class:`sealing.Keyring`, bound to their column and job id: input,
output (and progress), error, s3_config, stream chunks. No statement reads inside them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from anypod import jobs, types
from anypod.store import base, sealing

S = jobs.JobStatus
Row = Sequence[Any]
Step = tuple[str, Sequence[object]]
"""One statement and its parameters."""


COLUMNS = (
    "seq, id, endpoint, status, input, output, error, webhook, s3_config, execution_timeout_ms, "
    "ttl_ms, low_priority, owner, worker_id, attempts, max_attempts, retention_ms, created_at, "
    "expires_at, started_at, finished_at, lease_expires_at, stop_pod, webhook_state, "
    "webhook_attempts, retries"
)
INSERT_COLUMNS = (
    "id, endpoint, priority, input, webhook, s3_config, execution_timeout_ms, ttl_ms, "
    "low_priority, retention_ms, owner, max_attempts, created_at, expires_at"
)
WORKER_COLUMNS = "id, endpoint, last_seen, job_ids, gpu, version, unhealthy"
_PARAM = re.compile(r"\$(\d+)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dialect:
    """What differs between SQLite and PostgreSQL in the statements below."""

    name: str
    numbered: str  # how parameter N is written, with {n}
    thousand: str  # 1000 as a double, so "ms / thousand" is seconds as a double
    skip_locked: str  # row locks for claims: other claimers skip rows a claim holds
    for_update: str
    blob: str
    text: str
    in_array: str  # "<column> {in_array}" is true when the column is in the list parameter {n}
    encode_ids: Callable[[Sequence[str]], object]  # a list of ids as that parameter
    decode_ids: Callable[[Any], tuple[str, ...]]  # workers.job_ids as read back
    unnest: bool = False  # array parameters as rows: many updates in one statement

    def render(self, sql: str) -> str:
        return _PARAM.sub(lambda m: self.numbered.format(n=m.group(1)), sql)

    def any_of(self, n: int) -> str:
        return self.in_array.format(n=n)

    def cast(self, n: int, kind: str) -> str:
        return f"CAST(${n} AS {kind})"


SQLITE = Dialect(
    name="sqlite",
    numbered="?{n}",
    thousand="1000.0",
    skip_locked="",  # one writer at a time: a claim runs alone
    for_update="",
    blob="BLOB",
    text="TEXT",
    in_array="IN (SELECT value FROM json_each(${n}))",
    encode_ids=lambda ids: orjson.dumps(list(ids)).decode(),
    decode_ids=lambda value: tuple(orjson.loads(value or "[]")),
)
POSTGRES = Dialect(
    name="postgres",
    numbered="${n}",
    thousand="1000::float8",
    skip_locked="FOR UPDATE SKIP LOCKED",
    for_update="FOR UPDATE",
    blob="bytea",
    text="text",
    in_array="= ANY(${n}::text[])",
    encode_ids=list,
    decode_ids=lambda value: tuple(value or ()),
    unnest=True,
)
DIALECTS = {d.name: d for d in (SQLITE, POSTGRES)}


def _in(statuses: frozenset[jobs.JobStatus]) -> str:
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses)) + ")"


@dataclasses.dataclass(frozen=True)
class Statements:
    """The rendered statements of one dialect. Parameters are listed beside each."""

    d: Dialect

    def _r(self, sql: str) -> str:
        return self.d.render(sql)

    def _end_set(
        self,
        *,
        keep_progress: bool = False,
        values: tuple[str, str, str, str] = ("$1", "$2", "$3", "$5"),
    ) -> str:
        """The SET clause of :class:`jobs.End`: $1 status, $2 output, $3 error, $4 now,
        $5 stop_pod (or the ``values`` given for status, output, error, stop_pod). Schedules
        the purge and, for a job with a webhook, its delivery. A worker's result without
        output keeps the last progress update as the output (``keep_progress``); the
        server's ends (cancel, timeout) leave none."""
        status, output, error, stop = values
        output = f"COALESCE({output}, output)" if keep_progress else output
        return (
            f"SET status = {status}, output = {output}, error = {error}, finished_at = $4,"
            f" purge_at = $4 + retention_ms / {self.d.thousand}, stop_pod = {stop},"
            " lease_expires_at = NULL, webhook_state = CASE WHEN webhook IS NULL THEN NULL"
            f" ELSE '{jobs.WebhookState.PENDING}' END, webhook_next_at = $4"
        )

    # --- client side ---------------------------------------------------------------------------

    @functools.cached_property
    def SUBMIT(self) -> str:
        """The values of :func:`insert_values`, in :data:`INSERT_COLUMNS` order."""
        marks = ", ".join(f"${i + 1}" for i in range(INSERT_COLUMNS.count(",") + 1))
        return self._r(
            f"INSERT INTO jobs (status, {INSERT_COLUMNS}) VALUES ('{S.IN_QUEUE}', {marks})"
        )

    @functools.cached_property
    def GET(self) -> str:
        """$1 id."""
        return self._r(f"SELECT {COLUMNS} FROM jobs WHERE id = $1")

    @functools.cached_property
    def GET_SMALL(self) -> str:
        """$1 id, $2 bytes: the job, if its input, output and error hold at most $2 bytes
        (a blob's length is in its record header: nothing large is read to decide)."""
        size = "length(input) + COALESCE(length(output), 0) + COALESCE(length(error), 0)"
        return self._r(f"SELECT {COLUMNS} FROM jobs WHERE id = $1 AND {size} <= $2")

    @functools.cached_property
    def GET_FOR_UPDATE(self) -> str:
        """$1 id; locks the row until the transaction ends (PostgreSQL)."""
        return self._r(f"SELECT {COLUMNS} FROM jobs WHERE id = $1 {self.d.for_update}")

    @functools.cached_property
    def COUNTS(self) -> str:
        """$1 endpoint → (status, count, retried) rows."""
        return self._r(
            "SELECT status, COUNT(*),"
            " SUM(CASE WHEN attempts > 1 OR retries > 0 THEN 1 ELSE 0 END)"
            " FROM jobs WHERE endpoint = $1 GROUP BY status"
        )

    @functools.cached_property
    def COUNTS_OF(self) -> str:
        """COUNTS, of the jobs whose owner is in the list $2."""
        return self._r(
            "SELECT status, COUNT(*),"
            " SUM(CASE WHEN attempts > 1 OR retries > 0 THEN 1 ELSE 0 END)"
            f" FROM jobs WHERE endpoint = $1 AND owner {self.d.any_of(2)} GROUP BY status"
        )

    @functools.cached_property
    def END(self) -> str:
        """:class:`jobs.End` (see ``_end_set``), $6 id."""
        return self._r(
            f"UPDATE jobs {self._end_set()} WHERE id = $6 AND status IN {_in(jobs.End.SOURCES)}"
            f" RETURNING {COLUMNS}"
        )

    @functools.cached_property
    def END_HELD(self) -> str:
        """:class:`jobs.End` with a holder: $6 id, $7 worker, $8 endpoint (``Holder.holds``)."""
        return self._r(
            f"UPDATE jobs {self._end_set(keep_progress=True)}"
            f" WHERE id = $6 AND {self._held(7, 8)} RETURNING {COLUMNS}"
        )

    @functools.cached_property
    def END_HELD_MANY(self) -> str:
        """PostgreSQL only (:attr:`Dialect.unnest`): several results of one holder, one
        statement. $1 ids, $2 statuses, $3 outputs, $4 now, $5 errors, $6 stop_pods (arrays,
        one item per job), held by $7 worker on $8 endpoint."""
        if not self.d.unnest:
            raise NotImplementedError(f"{self.d.name} has no unnest: END_HELD per job")
        values = ("v.v_status", "v.v_output", "v.v_error", "v.v_stop")
        rows = (
            "unnest($1::text[], $2::text[], $3::bytea[], $5::bytea[], $6::boolean[])"
            " AS v(v_id, v_status, v_output, v_error, v_stop)"
        )
        return self._r(
            f"UPDATE jobs {self._end_set(keep_progress=True, values=values)} FROM {rows}"
            f" WHERE id = v.v_id AND {self._held(7, 8)} RETURNING {COLUMNS}"
        )

    @staticmethod
    def _held(worker: int, endpoint: int) -> str:
        """:meth:`jobs.Holder.holds`: the job runs, claimed by that worker on that endpoint."""
        return f"status = '{S.IN_PROGRESS}' AND worker_id = ${worker} AND endpoint = ${endpoint}"

    @functools.cached_property
    def PURGE_QUEUE(self) -> str:
        """:class:`jobs.End` (see ``_end_set``) for every queued job of $6 endpoint → the
        owner of each."""
        where = f"WHERE endpoint = $6 AND status = '{S.IN_QUEUE}'"
        return self._r(f"UPDATE jobs {self._end_set()} {where} RETURNING owner")

    @functools.cached_property
    def PURGE_QUEUE_OF(self) -> str:
        """PURGE_QUEUE, of the jobs whose owner is in the list $7."""
        where = f"WHERE endpoint = $6 AND status = '{S.IN_QUEUE}' AND owner {self.d.any_of(7)}"
        return self._r(f"UPDATE jobs {self._end_set()} {where} RETURNING owner")

    @functools.cached_property
    def RETRY(self) -> str:
        """:class:`jobs.Retry`: $1 at, $2 id."""
        return self._r(
            f"UPDATE jobs SET status = '{S.IN_QUEUE}', output = NULL, error = NULL,"
            " worker_id = NULL, started_at = NULL, finished_at = NULL, purge_at = NULL,"
            " lease_expires_at = NULL, deadline_at = NULL, attempts = 0, stop_pod = false,"
            " retries = retries + 1,"
            " webhook_state = NULL, webhook_attempts = 0, webhook_next_at = NULL,"
            f" expires_at = $1 + ttl_ms / {self.d.thousand}"
            f" WHERE id = $2 AND status IN {_in(jobs.Retry.SOURCES)} RETURNING {COLUMNS}"
        )

    # --- worker side ---------------------------------------------------------------------------

    @functools.cached_property
    def CLAIM(self) -> str:
        """:class:`jobs.Claim`: $1 worker, $2 now, $3 lease_until; $4 endpoint, $5 limit."""
        return self._r(
            f"UPDATE jobs SET status = '{S.IN_PROGRESS}', worker_id = $1,"
            " attempts = attempts + 1, started_at = $2, lease_expires_at = $3,"
            f" deadline_at = $2 + execution_timeout_ms / {self.d.thousand}"
            f" WHERE seq IN (SELECT seq FROM jobs WHERE endpoint = $4 AND status = '{S.IN_QUEUE}'"
            f" AND expires_at > $2 ORDER BY priority DESC, seq LIMIT $5 {self.d.skip_locked})"
            f" RETURNING {COLUMNS}"
        )

    @functools.cached_property
    def PROGRESS(self) -> str:
        """$1 output, $2 id, held by $3 worker on $4 endpoint."""
        return self._r(f"UPDATE jobs SET output = $1 WHERE id = $2 AND {self._held(3, 4)}")

    @functools.cached_property
    def APPEND_STREAM(self) -> str:
        """$1 job id, $2 chunk; inserts nothing unless the job is held by $3 worker on $4
        endpoint."""
        return self._r(
            f"INSERT INTO stream_chunks (job_id, output) SELECT {self.d.cast(1, self.d.text)},"
            f" {self.d.cast(2, self.d.blob)} WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1"
            f" AND {self._held(3, 4)})"
        )

    @functools.cached_property
    def DRAIN_STREAM(self) -> str:
        """$1 job id → (seq, output) rows, deleted."""
        return self._r("DELETE FROM stream_chunks WHERE job_id = $1 RETURNING seq, output")

    @functools.cached_property
    def DELETE_STREAM(self) -> str:
        """$1 job id."""
        return self._r("DELETE FROM stream_chunks WHERE job_id = $1")

    @functools.cached_property
    def UPSERT_WORKER(self) -> str:
        """The :data:`WORKER_COLUMNS` of a ping, $1..$7 (a worker is its endpoint's)."""
        return self._r(
            f"INSERT INTO workers ({WORKER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (endpoint, id) DO UPDATE SET last_seen = excluded.last_seen,"
            " job_ids = excluded.job_ids, gpu = excluded.gpu, version = excluded.version,"
            " unhealthy = excluded.unhealthy"
        )

    @functools.cached_property
    def RENEW_LEASES(self) -> str:
        """$1 lease_until, $2 ids (:meth:`Dialect.encode_ids`), held by $3 worker on $4
        endpoint → renewed ids."""
        return self._r(
            f"UPDATE jobs SET lease_expires_at = $1 WHERE id {self.d.any_of(2)}"
            f" AND {self._held(3, 4)} RETURNING id"
        )

    @functools.cached_property
    def HOLDERS(self) -> str:
        """$1 endpoint → the workers holding its running jobs."""
        return self._r(
            "SELECT DISTINCT worker_id FROM jobs"
            f" WHERE endpoint = $1 AND status = '{S.IN_PROGRESS}'"
        )

    @functools.cached_property
    def WORKERS(self) -> str:
        """$1 seen_since, $2 endpoint or NULL for all."""
        return self._r(
            f"SELECT {WORKER_COLUMNS} FROM workers WHERE last_seen >= $1"
            f" AND ({self.d.cast(2, self.d.text)} IS NULL OR endpoint = $2) ORDER BY id, endpoint"
        )

    # --- sweeping ------------------------------------------------------------------------------

    @functools.cached_property
    def OVERDUE(self) -> str:
        """$1 now, $2 limit."""
        return self._r(
            f"SELECT {COLUMNS} FROM jobs WHERE seq IN ("
            f"SELECT seq FROM jobs WHERE status = '{S.IN_PROGRESS}' AND lease_expires_at <= $1"
            f" UNION SELECT seq FROM jobs WHERE status = '{S.IN_PROGRESS}' AND deadline_at <= $1"
            f" UNION SELECT seq FROM jobs WHERE status IN {_in(jobs.ACTIVE)}"
            " AND expires_at <= $1 LIMIT $2)"
        )

    @functools.cached_property
    def REQUEUE(self) -> str:
        """:class:`jobs.Requeue`: $1 id."""
        return self._r(
            f"UPDATE jobs SET status = '{S.IN_QUEUE}', worker_id = NULL, started_at = NULL,"
            " lease_expires_at = NULL, deadline_at = NULL, output = NULL"
            f" WHERE id = $1 AND status IN {_in(jobs.Requeue.SOURCES)} RETURNING {COLUMNS}"
        )

    @functools.cached_property
    def RELEASE(self) -> str:
        """:class:`jobs.Release`: $1 ids (:meth:`Dialect.encode_ids`), held by $2 worker on $3
        endpoint → released ids."""
        return self._r(
            f"UPDATE jobs SET status = '{S.IN_QUEUE}', worker_id = NULL, started_at = NULL,"
            " lease_expires_at = NULL, deadline_at = NULL, output = NULL,"
            f" attempts = attempts - 1 WHERE id {self.d.any_of(1)} AND {self._held(2, 3)}"
            " RETURNING id"
        )

    @functools.cached_property
    def PURGE_FINISHED(self) -> str:
        """$1 now → deleted ids: finished jobs past retention, unless a webhook is pending.
        Their stream chunks go with them (the schema's ON DELETE CASCADE)."""
        return self._r(
            f"DELETE FROM jobs WHERE purge_at <= $1 AND (webhook_state IS NULL OR"
            f" webhook_state != '{jobs.WebhookState.PENDING}') RETURNING id"
        )

    @functools.cached_property
    def DUE_WEBHOOKS(self) -> str:
        """$1 lease_until, $2 now, $3 limit."""
        return self._r(
            "UPDATE jobs SET webhook_next_at = $1 WHERE seq IN (SELECT seq FROM jobs"
            f" WHERE webhook_state = '{jobs.WebhookState.PENDING}' AND webhook_next_at <= $2"
            f" ORDER BY webhook_next_at LIMIT $3 {self.d.skip_locked}) RETURNING {COLUMNS}"
        )

    @functools.cached_property
    def WEBHOOK_ATTEMPTED(self) -> str:
        """:class:`jobs.WebhookAttempt`: $1 state, $2 next_at; $3 id."""
        return self._r(
            "UPDATE jobs SET webhook_state = $1, webhook_attempts = webhook_attempts + 1,"
            " webhook_next_at = $2 WHERE id = $3"
        )

    def list_jobs(self, query: base.JobQuery) -> tuple[str, list[object]]:
        """One page of the queue browser , newest first."""
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("endpoint =", query.endpoint),
            ("owner =", query.owner),
            ("status =", query.status.value if query.status else None),
            ("seq <", query.before_seq),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(query.limit)
        sql = f"SELECT {COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ${len(params)}"
        return self._r(sql), params


@functools.cache
def for_dialect(name: str) -> Statements:
    """The statements of ``sqlite`` or ``postgres``."""
    return Statements(DIALECTS[name])


# --- rows ------------------------------------------------------------------------------------


def insert_values(new: jobs.NewJob, keys: sealing.Keyring) -> tuple[object, ...]:
    """Values for SUBMIT, in :data:`INSERT_COLUMNS` order."""
    return (
        new.id,
        new.endpoint,
        new.priority,
        keys.seal(new.input, "input", new.id),
        new.webhook,
        _seal(keys, new.s3_config, "s3_config", new.id),
        new.policy.execution_timeout_ms,
        new.policy.ttl_ms,
        new.policy.low_priority,
        new.retention_ms,
        new.owner,
        new.max_attempts,
        new.created_at,
        new.expires_at,
    )


def end_values(end: jobs.End, keys: sealing.Keyring, job_id: str | None) -> tuple[object, ...]:
    """$1..$5 of END, END_HELD and PURGE_QUEUE (``job_id`` None: the end of many jobs, which
    a sealing keyring refuses when it carries output or error: each is sealed to its job)."""
    output = _seal(keys, end.output, "output", job_id)
    error = _seal(keys, end.error, "error", job_id)
    return (end.status.value, output, error, end.finished_at, end.stop_pod)


def end_many_values(
    ends: Sequence[tuple[str, jobs.End]], keys: sealing.Keyring
) -> tuple[object, ...] | None:
    """The parameters of END_HELD_MANY, or None when the ends are not one holder's results
    at one time (then each goes alone)."""
    holder, now = ends[0][1].holder, ends[0][1].finished_at
    if holder is None or any(e.holder != holder or e.finished_at != now for _, e in ends):
        return None
    if len({job_id for job_id, _ in ends}) < len(ends):
        return None  # a repeated id: one by one, so the first of them is the one applied
    return (
        [job_id for job_id, _ in ends],
        [e.status.value for _, e in ends],
        [_seal(keys, e.output, "output", job_id) for job_id, e in ends],
        now,
        [_seal(keys, e.error, "error", job_id) for job_id, e in ends],
        [e.stop_pod for _, e in ends],
        *holder_values(holder),
    )


def holder_values(holder: jobs.Holder) -> tuple[str, str]:
    """The worker and endpoint parameters of a held-job guard."""
    return (holder.worker_id, holder.endpoint)


def progress_values(
    job_id: str, output: types.RawJSON, holder: jobs.Holder, keys: sealing.Keyring
) -> tuple[object, ...]:
    """The parameters of PROGRESS."""
    return (keys.seal(output, "output", job_id), job_id, *holder_values(holder))


def stream_values(
    job_id: str, output: types.RawJSON, holder: jobs.Holder, keys: sealing.Keyring
) -> tuple[object, ...]:
    """The parameters of APPEND_STREAM."""
    return (job_id, keys.seal(output, "stream_chunks", job_id), *holder_values(holder))


def drained(job_id: str, rows: Sequence[Row], keys: sealing.Keyring) -> list[types.RawJSON]:
    """The chunks of DRAIN_STREAM's rows, in the order they were appended."""
    return [keys.open(r[1], "stream_chunks", job_id) for r in sorted(rows, key=lambda r: r[0])]


def row_to_job(row: Row, keys: sealing.Keyring) -> jobs.Job:
    """A job from a row of :data:`COLUMNS` (``seq`` first, not part of the job)."""
    job_id = row[1]
    return jobs.Job(
        id=job_id,
        endpoint=row[2],
        status=S(row[3]),
        input=keys.open(row[4], "input", job_id),
        output=_open(keys, row[5], "output", job_id),
        error=_open(keys, row[6], "error", job_id),
        webhook=row[7],
        s3_config=_open(keys, row[8], "s3_config", job_id),
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
        webhook_state=None if row[23] is None else jobs.WebhookState(row[23]),
        webhook_attempts=row[24],
        retries=row[25],
    )


def claimed_in_order(rows: Sequence[Row], keys: sealing.Keyring) -> list[jobs.Job]:
    """Claimed rows come back in no particular order: priority first, then age."""
    return [row_to_job(r, keys) for r in sorted(rows, key=lambda r: (bool(r[11]), r[0]))]


def _seal(
    keys: sealing.Keyring, value: bytes | None, column: str, job_id: str | None
) -> bytes | None:
    if value is None or not keys.sealing:
        return value
    if job_id is None:
        raise ValueError(f"one {column} for many jobs cannot be sealed to each job")
    return keys.seal(value, column, job_id)


def _open(keys: sealing.Keyring, value: bytes | None, column: str, job_id: str) -> bytes | None:
    return None if value is None else keys.open(value, column, job_id)


def row_to_worker(row: Row, dialect: Dialect) -> base.WorkerInfo:
    """A worker from a row of :data:`WORKER_COLUMNS`."""
    return base.WorkerInfo(
        id=row[0],
        endpoint=row[1],
        last_seen=row[2],
        job_ids=dialect.decode_ids(row[3]),
        gpu=row[4],
        version=row[5],
        unhealthy=row[6],
    )
