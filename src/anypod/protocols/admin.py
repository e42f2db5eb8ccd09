"""anypod's admin API (``/admin/v1``): request and reply models, and rendering. Keys, worker
tokens, usage and the audit log; the admin scope calls it. Unknown fields are refused (400
naming them): an admin typo such as ``"scope"`` for ``"scopes"`` must not create a broader key.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from anypod import errors, keys
from anypod.store.tenancy import AuditEntry, UsageRow

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(Strict):
    name: Name
    tenant: Name | None = None
    scopes: list[Name] | None = Field(None, max_length=8, description="run, read, cancel, admin")
    endpoints: list[Name] | None = Field(None, max_length=64)
    expires: Text | None = Field(None, description="a duration: 30d, 12h, 90m")
    rate: Text | None = Field(None, description="requests per time: 20/s, 600/min")
    burst: float | None = Field(
        None, ge=1, le=keys.MAX_RATE, description="the rate bucket's size (default: 1 s of it)"
    )
    concurrency: StrictInt | None = Field(
        None, ge=1, le=keys.MAX_CONCURRENCY, description="unfinished jobs at once"
    )
    quota: Text | None = Field(None, description="jobs=10000/month,gpu_seconds=36000/month")


class TokenCreate(Strict):
    endpoint: Name
    name: Annotated[str, StringConstraints(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")] = ""


class KeysQuery(Strict):
    tenant: Name | None = None


class TokensQuery(Strict):
    endpoint: Name | None = None


class UsageQueryModel(Strict):
    key: Name | None = None
    tenant: Name | None = None
    since: Text | None = Field(None, description="YYYY-MM-DD (UTC), or RFC 3339")
    limit: int = Field(1000, ge=1, le=1000)


class AuditQueryModel(Strict):
    since: Text | None = Field(None, description="RFC 3339, or epoch seconds")
    action: Name | None = Field(None, description='exact, or a prefix ending in "." (key.)')
    actor: Name | None = None
    tenant: Name | None = None
    before: int | None = Field(
        None, ge=1, le=2**62, description="the seq of the last entry of a page"
    )
    limit: int = Field(100, ge=1, le=1000)


# --- replies ---------------------------------------------------------------------------------


class KeyLimitsReply(BaseModel):
    rate: float | None
    burst: float | None
    concurrency: int | None
    quotas: list[str]


class KeyReply(BaseModel):
    id: str
    name: str
    tenant: str
    scopes: list[str]
    endpoints: list[str] | None
    limits: KeyLimitsReply
    state: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    rotated_at: str | None


class NewKeyReply(KeyReply):
    key: str = Field(description="the secret: shown once, stored only as a hash")


class KeyList(BaseModel):
    keys: list[KeyReply]


class TokenReply(BaseModel):
    id: str
    endpoint: str
    name: str
    state: str
    created_at: str | None
    revoked_at: str | None


class NewTokenReply(TokenReply):
    token: str = Field(description="the secret: shown once, stored only as a hash")


class TokenRevoked(BaseModel):
    id: str
    state: str


class TokenList(BaseModel):
    tokens: list[TokenReply]


class UsageItem(BaseModel):
    day: str
    key: str
    tenant: str
    endpoint: str
    submitted: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    execution_ms: int
    bytes_in: int
    bytes_out: int


class UsageReply(BaseModel):
    usage: list[UsageItem]


class AuditItem(BaseModel):
    seq: int
    at: str
    action: str
    actor: str | None
    tenant: str | None
    target: str | None
    source: str | None
    detail: str | None


class AuditReply(BaseModel):
    entries: list[AuditItem]
    next_before: int | None = Field(description="pass as ?before= for the next (older) page")


def usage_item(row: UsageRow) -> dict[str, object]:
    k = row.key
    item: dict[str, object] = {
        "day": k.day,
        "key": k.key_id,
        "tenant": k.tenant,
        "endpoint": k.endpoint,
    }
    item.update(row.counts.as_dict())
    return item


def audit_item(entry: AuditEntry) -> dict[str, object]:
    at = datetime.datetime.fromtimestamp(entry.at, datetime.UTC)
    return {
        "seq": entry.seq,
        "at": at.isoformat(timespec="milliseconds"),
        "action": entry.action,
        "actor": entry.actor,
        "tenant": entry.tenant,
        "target": entry.target,
        "source": entry.source,
        "detail": entry.detail,
    }


def since_day(text: str | None) -> str | None:
    """``2026-12-01`` or an RFC 3339 time → the day (UTC)."""
    if text is None:
        return None
    if _DAY.fullmatch(text):
        return text
    return (
        datetime.datetime.fromtimestamp(since_time(text, "since"), datetime.UTC).date().isoformat()
    )


LATEST = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def since_time(text: str, field: str = "since") -> float:
    """RFC 3339 (``2026-12-01T10:00:00Z``), a day, or epoch seconds → epoch seconds."""
    bad = errors.InvalidRequest(
        f"{field}: want RFC 3339 (2026-12-01T10:00:00Z), a day or epoch seconds, from 1970 to 9999",
        field=field,
    )
    try:
        at = float(text) if _EPOCH.fullmatch(text) else _rfc3339(text)
    except ValueError:
        raise bad from None
    if not 0 <= at <= LATEST:
        raise bad
    return at


_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def _rfc3339(text: str) -> float:
    at = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return at.timestamp()
