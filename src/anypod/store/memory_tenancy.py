"""The tenancy methods of the in-memory store (:mod:`store.tenancy`): the plainest reading of
what the SQL in ``sql_tenancy.py`` does. Each method runs without awaiting, so each is atomic.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence

from anypod import errors, jobs, keys
from anypod.store.tenancy import (
    AuditEntry,
    AuditQuery,
    StoredKey,
    StoredToken,
    TenancyStore,
    UsageCounts,
    UsageKey,
    UsageQuery,
    UsageRow,
)

OPEN = frozenset({jobs.JobStatus.IN_QUEUE, jobs.JobStatus.IN_PROGRESS})


class MemoryTenancy(TenancyStore):
    def _init_tenancy(self) -> None:
        self._keys: dict[str, StoredKey] = {}
        self._tokens_by_hash: dict[str, StoredToken] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, at)
        self._quota: dict[tuple[str, str], float] = {}  # (key id, period) → used
        self._usage: dict[UsageKey, UsageCounts] = {}
        self._audit: list[AuditEntry] = []
        self._credentials_version = 0

    @abc.abstractmethod
    def _owned(self, owner: str) -> list[jobs.Job]:
        """The jobs of ``owner`` (the store's own method)."""

    @abc.abstractmethod
    async def submit(self, new: jobs.NewJob) -> jobs.Job: ...

    # --- keys --------------------------------------------------------------------------------

    async def add_key(self, key: keys.ApiKey, secret_hash: str) -> None:
        if key.id in self._keys:
            raise errors.Conflict(f"key id {key.id} already exists")
        self._keys[key.id] = StoredKey(key, secret_hash)

    async def get_key(self, key_id: str) -> StoredKey | None:
        return self._keys.get(key_id)

    async def list_keys(self, tenant: str | None) -> list[keys.ApiKey]:
        found = [s.key for s in self._keys.values() if tenant in (None, s.key.tenant)]
        return sorted(found, key=lambda k: (k.created_at, k.id))

    async def revoke_key(self, key_id: str, now: float) -> bool:
        found = self._keys.get(key_id)
        if found is None or found.key.revoked_at is not None:
            return False
        revoked = dataclasses.replace(found.key, revoked_at=now)
        self._keys[key_id] = StoredKey(revoked, found.secret_hash)
        return True

    async def rotate_key(self, key_id: str, secret_hash: str, now: float) -> bool:
        found = self._keys.get(key_id)
        if found is None or found.key.revoked_at is not None:
            return False
        self._keys[key_id] = StoredKey(dataclasses.replace(found.key, rotated_at=now), secret_hash)
        return True

    async def tenant_key_ids(self, tenant: str) -> list[str]:
        return [k for k, s in self._keys.items() if s.key.tenant == tenant]

    async def has_keys(self) -> bool:
        return bool(self._keys)

    # --- worker tokens -----------------------------------------------------------------------

    async def add_token(self, token: keys.WorkerToken, token_hash: str) -> None:
        if token_hash in self._tokens_by_hash:
            raise errors.Conflict("that worker token already exists")
        self._tokens_by_hash[token_hash] = StoredToken(token, token_hash)

    async def token_by_hash(self, token_hash: str) -> keys.WorkerToken | None:
        found = self._tokens_by_hash.get(token_hash)
        return None if found is None else found.token

    async def list_tokens(self, endpoint: str | None) -> list[keys.WorkerToken]:
        found = [s.token for s in self._tokens_by_hash.values()]
        found = [t for t in found if endpoint in (None, t.endpoint)]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    async def revoke_token(self, token_id: str, now: float) -> bool:
        for digest, stored in self._tokens_by_hash.items():
            if stored.token.id == token_id and stored.token.revoked_at is None:
                revoked = dataclasses.replace(stored.token, revoked_at=now)
                self._tokens_by_hash[digest] = StoredToken(revoked, digest)
                return True
        return False

    # --- limits ------------------------------------------------------------------------------

    async def take_tokens(
        self, key_id: str, *, rate: float, burst: float, want: float, now: float
    ) -> tuple[float, float]:
        tokens, at = self._buckets.get(key_id, (burst, now))
        avail = min(burst, tokens + max(0.0, now - at) * rate)
        granted = min(avail, want) if avail >= 1 else 0.0
        self._buckets[key_id] = (avail - granted, now)
        return granted, avail - granted

    async def charge(self, key_id: str, periods: Sequence[str], amount: float) -> list[float]:
        totals = []
        for period in periods:
            self._quota[(key_id, period)] = self._quota.get((key_id, period), 0.0) + amount
            totals.append(self._quota[(key_id, period)])
        return totals

    async def refund(self, key_id: str, periods: Sequence[str], amount: float) -> None:
        for period in periods:
            self._quota[(key_id, period)] = self._quota.get((key_id, period), 0.0) - amount

    async def purge_quota_counters(self, before_day: str) -> int:
        old = [k for k in self._quota if k[1][-10:] < before_day]
        for k in old:
            del self._quota[k]
        return len(old)

    async def open_jobs(self, owner: str) -> int:
        return sum(1 for job in self._owned(owner) if job.status in OPEN)

    async def submit_capped(self, new: jobs.NewJob, cap: int) -> jobs.Job | None:
        if new.owner is not None and await self.open_jobs(new.owner) >= cap:
            return None
        return await self.submit(new)

    # --- usage -------------------------------------------------------------------------------

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        for row in rows:
            self._usage.setdefault(row.key, UsageCounts()).add(row.counts)

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        found = [
            UsageRow(k, dataclasses.replace(c))
            for k, c in self._usage.items()
            if query.key_id in (None, k.key_id)
            and query.tenant in (None, k.tenant)
            and (query.since_day is None or k.day >= query.since_day)
        ]
        found.sort(key=lambda r: (r.key.tenant, r.key.key_id, r.key.endpoint))
        found.sort(key=lambda r: r.key.day, reverse=True)
        return found[: query.limit]

    async def usage_since(self, key_id: str, since_day: str) -> UsageCounts:
        total = UsageCounts()
        for k, c in self._usage.items():
            if k.key_id == key_id and k.day >= since_day:
                total.add(c)
        return total

    # --- audit -------------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            seq = (self._audit[-1].seq or 0) + 1 if self._audit else 1
            self._audit.append(dataclasses.replace(entry, seq=seq))

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        found = [e for e in reversed(self._audit) if _matches(e, query)]
        return found[: query.limit]

    async def purge_audit(self, before: float) -> int:
        kept = [e for e in self._audit if e.at >= before]
        dropped = len(self._audit) - len(kept)
        self._audit = kept
        return dropped

    async def announce_credentials(self) -> None:
        self._credentials_version += 1

    def credentials_version(self) -> object | None:
        return self._credentials_version


def _matches(entry: AuditEntry, query: AuditQuery) -> bool:
    action = query.action
    if action is not None and not (
        entry.action.startswith(action) if action.endswith(".") else entry.action == action
    ):
        return False
    return (
        (query.since is None or entry.at >= query.since)
        and query.actor in (None, entry.actor)
        and query.tenant in (None, entry.tenant)
        and (query.before_seq is None or (entry.seq or 0) < query.before_seq)
    )
