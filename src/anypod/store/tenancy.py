"""What the store keeps about callers rather than jobs: API keys, worker tokens, usage per key
and day, the audit log and the shared rate-limit buckets. The records, and the part of the
:class:`Store` interface that reads and writes them (implemented once for SQL in
``sql_tenancy.py`` and in memory in ``memory_tenancy.py``; one contract suite runs on all).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import functools
from collections.abc import Sequence

from anypod import jobs, keys

S = jobs.JobStatus
FINAL_COLUMNS = {
    S.COMPLETED: "completed",
    S.FAILED: "failed",
    S.CANCELLED: "cancelled",
    S.TIMED_OUT: "timed_out",
}


def day_of(at: float) -> str:
    """``YYYY-MM-DD`` (UTC) of a time."""
    return _day(int(at // 86400))


@functools.lru_cache(maxsize=64)
def _day(day_number: int) -> str:
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day_number)).isoformat()


@dataclasses.dataclass(frozen=True)
class UsageKey:
    day: str  # YYYY-MM-DD, UTC
    key_id: str
    endpoint: str
    tenant: str


@dataclasses.dataclass
class UsageCounts:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    execution_ms: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    FIELDS = (
        "submitted",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
        "execution_ms",
        "bytes_in",
        "bytes_out",
    )

    def add(self, other: UsageCounts) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FIELDS}


@dataclasses.dataclass(frozen=True)
class UsageRow:
    key: UsageKey
    counts: UsageCounts


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsageQuery:
    key_id: str | None = None
    tenant: str | None = None
    since_day: str | None = None  # inclusive
    limit: int = 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditEntry:
    at: float
    action: str  # "key.create", "job.cancel", "auth.failed", "admin.usage", ...
    actor: str | None = None  # a key id, "cli", or None (anonymous)
    tenant: str | None = None
    target: str | None = None  # what was acted on: a key id, a job id, an endpoint
    source: str | None = None  # the client's address
    detail: str | None = None  # JSON text
    seq: int | None = None  # set once stored


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditQuery:
    since: float | None = None
    action: str | None = None  # exact, or a prefix ending in "." ("key.")
    actor: str | None = None
    tenant: str | None = None
    before_seq: int | None = None  # newest first: the page after this entry
    limit: int = 100


@dataclasses.dataclass(frozen=True)
class StoredKey:
    key: keys.ApiKey
    secret_hash: str


@dataclasses.dataclass(frozen=True)
class StoredToken:
    token: keys.WorkerToken
    token_hash: str


class TenancyStore(abc.ABC):
    # --- API keys ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_key(self, key: keys.ApiKey, secret_hash: str) -> None: ...

    @abc.abstractmethod
    async def get_key(self, key_id: str) -> StoredKey | None: ...

    @abc.abstractmethod
    async def list_keys(self, tenant: str | None) -> list[keys.ApiKey]:
        """Oldest first; every tenant's with ``tenant`` None."""

    @abc.abstractmethod
    async def revoke_key(self, key_id: str, now: float) -> bool:
        """False for an unknown or already revoked key."""

    @abc.abstractmethod
    async def rotate_key(self, key_id: str, secret_hash: str, now: float) -> bool:
        """A new secret for a key that is not revoked (the old one stops working)."""

    @abc.abstractmethod
    async def tenant_key_ids(self, tenant: str) -> list[str]: ...

    @abc.abstractmethod
    async def has_keys(self) -> bool:
        """Is any key, revoked or not, on record: then the client API is never open."""

    # --- worker tokens -----------------------------------------------------------------------

    @abc.abstractmethod
    async def add_token(self, token: keys.WorkerToken, token_hash: str) -> None: ...

    @abc.abstractmethod
    async def token_by_hash(self, token_hash: str) -> keys.WorkerToken | None: ...

    @abc.abstractmethod
    async def list_tokens(self, endpoint: str | None) -> list[keys.WorkerToken]: ...

    @abc.abstractmethod
    async def revoke_token(self, token_id: str, now: float) -> bool: ...

    # --- limits ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def take_tokens(
        self, key_id: str, *, rate: float, burst: float, want: float, now: float
    ) -> tuple[float, float]:
        """From the key's token bucket (shared by every replica): up to ``want`` tokens if at
        least one is there. Returns (granted, left)."""

    @abc.abstractmethod
    async def charge(self, key_id: str, periods: Sequence[str], amount: float) -> list[float]:
        """Add ``amount`` to each of the key's quota counters (one transaction); return each
        counter's new total, in order."""

    @abc.abstractmethod
    async def refund(self, key_id: str, periods: Sequence[str], amount: float) -> None:
        """Take back a :meth:`charge`."""

    @abc.abstractmethod
    async def purge_quota_counters(self, before_day: str) -> int:
        """Drop counters of periods that started before ``before_day`` (``YYYY-MM-DD``)."""

    @abc.abstractmethod
    async def open_jobs(self, owner: str) -> int:
        """The key's jobs IN_QUEUE or IN_PROGRESS."""

    @abc.abstractmethod
    async def submit_capped(self, new: jobs.NewJob, cap: int) -> jobs.Job | None:
        """Submit unless the owner already has ``cap`` unfinished jobs (None then), atomically
        against concurrent submits of the same owner on any replica."""

    # --- usage -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """Add the counts to what is stored, in one transaction."""

    @abc.abstractmethod
    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        """Newest day first."""

    @abc.abstractmethod
    async def usage_since(self, key_id: str, since_day: str) -> UsageCounts: ...

    # --- audit -------------------------------------------------------------------------------

    @abc.abstractmethod
    async def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...

    @abc.abstractmethod
    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Newest first."""

    @abc.abstractmethod
    async def purge_audit(self, before: float) -> int:
        """Drop entries older than ``before`` (retention); entries are otherwise never changed."""

    @abc.abstractmethod
    async def announce_credentials(self) -> None:
        """Tell every server that keys or tokens changed (PostgreSQL: NOTIFY; SQLite: a
        sidecar file beside the database)."""

    def credentials_version(self) -> object | None:
        """Something cheap to read that changes whenever another process announces a change
        to keys or tokens; None when there is no such thing (nothing may then be cached)."""
        return None
