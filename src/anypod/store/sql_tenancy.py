"""The SQL of keys, worker tokens, usage, audit and rate buckets (:mod:`store.tenancy`),
each statement once in ``$n`` form, and the :class:`TenancyStore` methods over the SQL store's
primitives. The job statements stay in :mod:`store.sql`; this module only adds tables.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from anypod import errors, jobs, keys
from anypod.store import sql
from anypod.store.tenancy import (
    AuditEntry,
    AuditQuery,
    StoredKey,
    TenancyStore,
    UsageCounts,
    UsageKey,
    UsageQuery,
    UsageRow,
)

Step = sql.Step

KEY_COLUMNS = (
    "id, secret_hash, name, tenant, scopes, endpoints, limits, created_at, expires_at, "
    "revoked_at, rotated_at"
)
TOKEN_COLUMNS = "id, endpoint, name, created_at, revoked_at"
USAGE_KEY = "day, key_id, endpoint, tenant"
USAGE_COUNTS = ", ".join(UsageCounts.FIELDS)
AUDIT_COLUMNS = "seq, at, actor, tenant, action, target, source, detail"
OPEN = "('IN_QUEUE', 'IN_PROGRESS')"  # as jobs_owner_open's WHERE, or SQLite ignores the index
# PostgreSQL's types of sql.INSERT_COLUMNS, for INSERT ... SELECT (SQLite needs none)
_PG_INSERT_TYPES = (
    "text, text, integer, bytea, text, bytea, bigint, bigint, boolean, bigint, text, integer, "
    "double precision, double precision"
).split(", ")


@dataclasses.dataclass(frozen=True)
class TenancyStatements:
    d: sql.Dialect

    def _r(self, text: str) -> str:
        return self.d.render(text)

    @property
    def pg(self) -> bool:
        return self.d.name == "postgres"

    # --- keys --------------------------------------------------------------------------------

    @functools.cached_property
    def ADD_KEY(self) -> str:
        marks = ", ".join(f"${i}" for i in range(1, 12))
        return self._r(f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ({marks})")

    @functools.cached_property
    def GET_KEY(self) -> str:
        return self._r(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")

    @functools.cached_property
    def LIST_KEYS(self) -> str:
        """$1 tenant, or NULL for all."""
        return self._r(
            f"SELECT {KEY_COLUMNS} FROM api_keys"
            f" WHERE ({self._text(1)} IS NULL OR tenant = {self._text(1)}) ORDER BY created_at, id"
        )

    @functools.cached_property
    def REVOKE_KEY(self) -> str:
        return self._r("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")

    @functools.cached_property
    def ROTATE_KEY(self) -> str:
        return self._r(
            "UPDATE api_keys SET secret_hash = $2, rotated_at = $3"
            " WHERE id = $1 AND revoked_at IS NULL"
        )

    @functools.cached_property
    def TENANT_KEY_IDS(self) -> str:
        return self._r("SELECT id FROM api_keys WHERE tenant = $1")

    @functools.cached_property
    def HAS_KEYS(self) -> str:
        return "SELECT 1 FROM api_keys LIMIT 1"

    # --- worker tokens -------------------------------------------------------------------------

    @functools.cached_property
    def ADD_TOKEN(self) -> str:
        return self._r(
            "INSERT INTO worker_tokens (token_hash, id, endpoint, name, created_at)"
            " VALUES ($1, $2, $3, $4, $5)"
        )

    @functools.cached_property
    def TOKEN_BY_HASH(self) -> str:
        return self._r(f"SELECT {TOKEN_COLUMNS} FROM worker_tokens WHERE token_hash = $1")

    @functools.cached_property
    def LIST_TOKENS(self) -> str:
        return self._r(
            f"SELECT {TOKEN_COLUMNS} FROM worker_tokens"
            f" WHERE ({self._text(1)} IS NULL OR endpoint = {self._text(1)})"
            " ORDER BY created_at, id"
        )

    @functools.cached_property
    def REVOKE_TOKEN(self) -> str:
        return self._r(
            "UPDATE worker_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
        )

    # --- limits ------------------------------------------------------------------------------

    @functools.cached_property
    def TAKE_TOKENS(self) -> str:
        """$1 key id, $2 burst, $3 now, $4 want, $5 rate → (granted, left). The bucket refills
        at ``rate`` up to ``burst``; a take of at least one token gets up to ``want``."""
        least, most = ("LEAST", "GREATEST") if self.pg else ("min", "max")
        burst, now, want, rate = (self._float(n) for n in (2, 3, 4, 5))
        avail = (
            f"{least}({burst}, rate_buckets.tokens + {most}(0, {now} - rate_buckets.at) * {rate})"
        )
        grant = f"CASE WHEN {avail} >= 1 THEN {least}({avail}, {want}) ELSE 0 END"
        return self._r(
            "INSERT INTO rate_buckets (key_id, tokens, at, granted)"
            f" VALUES ($1, {burst} - {least}({burst}, {want}), {now}, {least}({burst}, {want}))"
            f" ON CONFLICT (key_id) DO UPDATE SET granted = {grant},"
            f" tokens = {avail} - {grant}, at = {now}"
            " RETURNING granted, tokens"
        )

    @functools.cached_property
    def CHARGE(self) -> str:
        """$1 key id, $2 period, $3 amount → the counter's new total."""
        return self._r(
            "INSERT INTO quota_counters (key_id, period, used) VALUES ($1, $2, $3)"
            " ON CONFLICT (key_id, period) DO UPDATE SET used = quota_counters.used + $3"
            " RETURNING used"
        )

    @functools.cached_property
    def REFUND(self) -> str:
        return self._r(
            "UPDATE quota_counters SET used = used - $3 WHERE key_id = $1 AND period = $2"
        )

    @functools.cached_property
    def PURGE_QUOTA_COUNTERS(self) -> str:
        """Periods end in their first day (``jobs:month:2026-12-01``)."""
        return self._r("DELETE FROM quota_counters WHERE substr(period, length(period) - 9) < $1")

    @functools.cached_property
    def OPEN_JOBS(self) -> str:
        return self._r(f"SELECT count(*) FROM jobs WHERE owner = $1 AND status IN {OPEN}")

    @functools.cached_property
    def SUBMIT_CAPPED(self) -> str:
        """sql.SUBMIT's values, then $15 owner, $16 cap: inserts nothing at the cap."""
        n = sql.INSERT_COLUMNS.count(",") + 1
        if self.pg:
            marks = ", ".join(f"CAST(${i + 1} AS {t})" for i, t in enumerate(_PG_INSERT_TYPES))
        else:
            marks = ", ".join(f"${i + 1}" for i in range(n))
        cap = self._int(n + 2)
        return self._r(
            f"INSERT INTO jobs (status, {sql.INSERT_COLUMNS})"
            f" SELECT '{jobs.JobStatus.IN_QUEUE}', {marks}"
            f" WHERE (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = ${n + 1}"
            f" AND status IN {OPEN} LIMIT {cap}) AS open_jobs) < {cap} RETURNING id"
        )

    @functools.cached_property
    def LOCK_OWNER(self) -> str:
        """PostgreSQL: capped submits of one owner, one at a time (till the transaction ends)."""
        return self._r("SELECT pg_advisory_xact_lock(hashtext($1))")

    # --- usage -------------------------------------------------------------------------------

    @functools.cached_property
    def ADD_USAGE(self) -> str:
        marks = ", ".join(f"${i}" for i in range(1, 13))
        adds = ", ".join(f"{c} = key_usage.{c} + excluded.{c}" for c in UsageCounts.FIELDS)
        return self._r(
            f"INSERT INTO key_usage ({USAGE_KEY}, {USAGE_COUNTS}) VALUES ({marks})"
            f" ON CONFLICT (day, key_id, endpoint) DO UPDATE SET {adds}"
        )

    @functools.cached_property
    def USAGE(self) -> str:
        """$1 key id, $2 tenant, $3 since day (each NULL: any), $4 limit."""
        return self._r(
            f"SELECT {USAGE_KEY}, {USAGE_COUNTS} FROM key_usage"
            f" WHERE ({self._text(1)} IS NULL OR key_id = {self._text(1)})"
            f" AND ({self._text(2)} IS NULL OR tenant = {self._text(2)})"
            f" AND ({self._text(3)} IS NULL OR day >= {self._text(3)})"
            " ORDER BY day DESC, tenant, key_id, endpoint LIMIT $4"
        )

    @functools.cached_property
    def USAGE_SINCE(self) -> str:
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in UsageCounts.FIELDS)
        return self._r(f"SELECT {sums} FROM key_usage WHERE key_id = $1 AND day >= $2")

    # --- audit -------------------------------------------------------------------------------

    @functools.cached_property
    def APPEND_AUDIT(self) -> str:
        return self._r(
            "INSERT INTO audit_log (at, actor, tenant, action, target, source, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )

    @functools.cached_property
    def AUDIT(self) -> str:
        """$1 since, $2 action (exact), $3 action prefix, $4 actor, $5 tenant, $6 before seq,
        $7 limit; each filter NULL: any."""
        t = self._text
        return self._r(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log"
            f" WHERE ({self._float(1)} IS NULL OR at >= {self._float(1)})"
            f" AND ({t(2)} IS NULL OR action = {t(2)})"
            f" AND ({t(3)} IS NULL OR substr(action, 1, length({t(3)})) = {t(3)})"
            f" AND ({t(4)} IS NULL OR actor = {t(4)}) AND ({t(5)} IS NULL OR tenant = {t(5)})"
            f" AND ({self._int(6)} IS NULL OR seq < {self._int(6)})"
            " ORDER BY seq DESC LIMIT $7"
        )

    @functools.cached_property
    def PURGE_AUDIT(self) -> str:
        return self._r("DELETE FROM audit_log WHERE at < $1")

    NOTIFY_CREDENTIALS = "SELECT pg_notify('anypod', 'credentials')"

    # --- typed parameters (PostgreSQL cannot infer "$1 IS NULL") -------------------------------

    def _text(self, n: int) -> str:
        return f"CAST(${n} AS text)" if self.pg else f"${n}"

    def _float(self, n: int) -> str:
        return f"CAST(${n} AS double precision)" if self.pg else f"${n}"

    def _int(self, n: int) -> str:
        return f"CAST(${n} AS bigint)" if self.pg else f"${n}"


@functools.cache
def statements(dialect: sql.Dialect) -> TenancyStatements:
    return TenancyStatements(dialect)


class SQLTenancy(TenancyStore):
    """The tenancy methods of the SQL store, over the primitives it provides
    (:class:`store.sql_store.SQLStore`)."""

    dialect: sql.Dialect

    @abc.abstractmethod
    async def _fetch(
        self, statement: str, args: Sequence[object], *, bulk: bool = False
    ) -> list[sql.Row]: ...

    @abc.abstractmethod
    async def _fetchrow(self, statement: str, args: Sequence[object]) -> sql.Row | None: ...

    @abc.abstractmethod
    async def _read_small(self, statement: str, args: Sequence[object]) -> sql.Row | None: ...

    @abc.abstractmethod
    async def _execute(
        self, statement: str, args: Sequence[object], *, bulk: bool = False
    ) -> int: ...

    @abc.abstractmethod
    async def _execute_many(self, statement: str, args: Sequence[Sequence[object]]) -> None: ...

    @abc.abstractmethod
    async def _script(self, steps: Sequence[Step]) -> list[list[sql.Row]]: ...

    @abc.abstractmethod
    def _submit_values(self, new: jobs.NewJob) -> tuple[object, ...]:
        """The values of ``sql.SUBMIT`` for ``new`` (sealed, when encryption is on)."""

    @property
    def t(self) -> TenancyStatements:
        return statements(self.dialect)

    # --- keys --------------------------------------------------------------------------------

    async def add_key(self, key: keys.ApiKey, secret_hash: str) -> None:
        try:
            await self._execute(self.t.ADD_KEY, _key_values(key, secret_hash))
        except errors.Conflict as exc:
            raise errors.Conflict(f"key id {key.id} already exists") from exc

    async def get_key(self, key_id: str) -> StoredKey | None:
        row = await self._read_small(self.t.GET_KEY, (key_id,))
        return None if row is None else _stored_key(tuple(row))

    async def list_keys(self, tenant: str | None) -> list[keys.ApiKey]:
        rows = await self._fetch(self.t.LIST_KEYS, (tenant,))
        return [_stored_key(tuple(r)).key for r in rows]

    async def revoke_key(self, key_id: str, now: float) -> bool:
        return await self._execute(self.t.REVOKE_KEY, (key_id, now)) > 0

    async def rotate_key(self, key_id: str, secret_hash: str, now: float) -> bool:
        return await self._execute(self.t.ROTATE_KEY, (key_id, secret_hash, now)) > 0

    async def tenant_key_ids(self, tenant: str) -> list[str]:
        return [str(r[0]) for r in await self._fetch(self.t.TENANT_KEY_IDS, (tenant,))]

    async def has_keys(self) -> bool:
        return await self._read_small(self.t.HAS_KEYS, ()) is not None

    # --- worker tokens -----------------------------------------------------------------------

    async def add_token(self, token: keys.WorkerToken, token_hash: str) -> None:
        args = (token_hash, token.id, token.endpoint, token.name, token.created_at)
        await self._execute(self.t.ADD_TOKEN, args)

    async def token_by_hash(self, token_hash: str) -> keys.WorkerToken | None:
        row = await self._read_small(self.t.TOKEN_BY_HASH, (token_hash,))
        return None if row is None else _token(row)

    async def list_tokens(self, endpoint: str | None) -> list[keys.WorkerToken]:
        return [_token(r) for r in await self._fetch(self.t.LIST_TOKENS, (endpoint,))]

    async def revoke_token(self, token_id: str, now: float) -> bool:
        return await self._execute(self.t.REVOKE_TOKEN, (token_id, now)) > 0

    # --- limits ------------------------------------------------------------------------------

    async def take_tokens(
        self, key_id: str, *, rate: float, burst: float, want: float, now: float
    ) -> tuple[float, float]:
        row = await self._fetchrow(self.t.TAKE_TOKENS, (key_id, burst, now, want, rate))
        assert row is not None, "an upsert returns its row"
        return float(row[0]), float(row[1])

    async def charge(self, key_id: str, periods: Sequence[str], amount: float) -> list[float]:
        steps = [(self.t.CHARGE, (key_id, p, amount)) for p in periods]
        return [float(rows[0][0]) for rows in await self._script(steps)] if steps else []

    async def refund(self, key_id: str, periods: Sequence[str], amount: float) -> None:
        if periods:
            await self._execute_many(self.t.REFUND, [(key_id, p, amount) for p in periods])

    async def purge_quota_counters(self, before_day: str) -> int:
        return await self._execute(self.t.PURGE_QUOTA_COUNTERS, (before_day,), bulk=True)

    async def open_jobs(self, owner: str) -> int:
        row = await self._fetchrow(self.t.OPEN_JOBS, (owner,))
        return int(row[0]) if row else 0

    async def submit_capped(self, new: jobs.NewJob, cap: int) -> jobs.Job | None:
        owner = new.owner or ""
        insert = (self.t.SUBMIT_CAPPED, (*self._submit_values(new), owner, cap))
        steps = [(self.t.LOCK_OWNER, (owner,)), insert] if self.t.pg else [insert]
        try:
            results = await self._script(steps)
        except errors.Conflict as exc:
            raise errors.Conflict(f"job id {new.id} already exists") from exc
        return new.queued() if results[-1] else None

    # --- usage -------------------------------------------------------------------------------

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        args = [
            (r.key.day, r.key.key_id, r.key.endpoint, r.key.tenant, *r.counts.values())
            for r in rows
        ]
        if args:
            await self._execute_many(self.t.ADD_USAGE, args)

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        args = (query.key_id, query.tenant, query.since_day, query.limit)
        return [_usage_row(r) for r in await self._fetch(self.t.USAGE, args)]

    async def usage_since(self, key_id: str, since_day: str) -> UsageCounts:
        row = await self._fetchrow(self.t.USAGE_SINCE, (key_id, since_day))
        return UsageCounts(*(int(v) for v in row)) if row else UsageCounts()

    # --- audit -------------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        args = [(e.at, e.actor, e.tenant, e.action, e.target, e.source, e.detail) for e in entries]
        if args:
            await self._execute_many(self.t.APPEND_AUDIT, args)

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        action = query.action
        prefix = action if action and action.endswith(".") else None
        exact = None if prefix else action
        args = (
            query.since,
            exact,
            prefix,
            query.actor,
            query.tenant,
            query.before_seq,
            query.limit,
        )
        return [_audit(r) for r in await self._fetch(self.t.AUDIT, args)]

    async def purge_audit(self, before: float) -> int:
        return await self._execute(self.t.PURGE_AUDIT, (before,), bulk=True)

    async def announce_credentials(self) -> None:
        if self.t.pg:
            await self._fetch(self.t.NOTIFY_CREDENTIALS, ())


def _key_values(key: keys.ApiKey, secret_hash: str) -> tuple[object, ...]:
    return (
        key.id,
        secret_hash,
        key.name,
        key.tenant,
        keys.encode_set(key.scopes),
        keys.encode_set(key.endpoints),
        keys.encode_limits(key.limits),
        key.created_at,
        key.expires_at,
        key.revoked_at,
        key.rotated_at,
    )


@functools.lru_cache(maxsize=1024)
def _stored_key(row: tuple[Any, ...]) -> StoredKey:
    """A key's row, decoded (once per distinct row: keys are read on every request)."""
    key = keys.ApiKey(
        id=row[0],
        name=row[2],
        tenant=row[3],
        scopes=frozenset(keys.Scope(s) for s in keys.decode_set(row[4]) or ()),
        endpoints=keys.decode_set(row[5]),
        limits=keys.decode_limits(row[6]),
        created_at=row[7],
        expires_at=row[8],
        revoked_at=row[9],
        rotated_at=row[10],
    )
    return StoredKey(key, row[1])


def _token(row: sql.Row) -> keys.WorkerToken:
    return keys.WorkerToken(
        id=row[0], endpoint=row[1], name=row[2], created_at=row[3], revoked_at=row[4]
    )


def _usage_row(row: sql.Row) -> UsageRow:
    return UsageRow(UsageKey(*row[:4]), UsageCounts(*(int(v) for v in row[4:])))


def _audit(row: sql.Row) -> AuditEntry:
    return AuditEntry(
        seq=row[0],
        at=row[1],
        actor=row[2],
        tenant=row[3],
        action=row[4],
        target=row[5],
        source=row[6],
        detail=row[7],
    )
