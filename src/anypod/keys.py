"""API keys and worker tokens as data: what a key may do (scopes, endpoints), until when, under
which limits, and the secret's format. Pure: no I/O; the store keeps the records, ``access``
resolves a request's secret into one.

A key's secret is ``apk_<id>_<random>``: the prefix says what it is (secret scanners and
people recognise it), the id names the record to look up (one primary-key read, no scan) and
is what logs, usage and audit show; only a SHA-256 of the whole secret is stored, and it is
compared in constant time (``access``). Worker tokens are ``apw_<id>_<random>`` the same way.
The secrets are 256 random bits, so a fast hash is enough (nothing to brute-force).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import enum
import functools
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping

import orjson

from anypod import errors

KEY_PREFIX, TOKEN_PREFIX = "apk", "apw"
_ID = re.compile(r"[a-z0-9]{12}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
MAX_ENDPOINTS = 64


class Scope(enum.StrEnum):
    RUN = "run"  # submit
    READ = "read"  # status, stream, health
    CANCEL = "cancel"  # cancel, retry, purge
    ADMIN = "admin"  # keys, usage, audit, every tenant


DEFAULT_SCOPES = frozenset({Scope.RUN, Scope.READ, Scope.CANCEL})
ALL_SCOPES = frozenset(Scope)


class Period(enum.StrEnum):
    DAY = "day"
    MONTH = "month"

    def start(self, now: float) -> float:
        """The start (UTC) of the period that ``now`` falls in."""
        return _period_start(self, int(now // 86400))

    def end(self, now: float) -> float:
        start = datetime.datetime.fromtimestamp(self.start(now), datetime.UTC)
        if self is Period.DAY:
            return (start + datetime.timedelta(days=1)).timestamp()
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month).timestamp()


@functools.lru_cache(maxsize=64)
def _period_start(period: Period, day_number: int) -> float:
    day = datetime.date(1970, 1, 1) + datetime.timedelta(days=day_number)
    if period is Period.MONTH:
        day = day.replace(day=1)
    return float(calendar.timegm(day.timetuple()))


class Meter(enum.StrEnum):
    JOBS = "jobs"  # jobs submitted
    GPU_SECONDS = "gpu_seconds"  # execution seconds of finished jobs


@dataclasses.dataclass(frozen=True)
class Quota:
    meter: Meter
    limit: int
    period: Period

    def spec(self) -> str:
        return f"{self.meter}={self.limit}/{self.period}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeyLimits:
    rate: float | None = None  # requests per second, a token bucket
    burst: float | None = None  # the bucket's size (default: one second of rate, at least 1)
    concurrency: int | None = None  # unfinished jobs at once
    quotas: tuple[Quota, ...] = ()

    @property
    def bucket(self) -> float:
        assert self.rate is not None
        return self.burst if self.burst is not None else max(1.0, self.rate)

    def to_json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "concurrency": self.concurrency,
            "quotas": [q.spec() for q in self.quotas],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> KeyLimits:
        quotas = data.get("quotas") or []
        assert isinstance(quotas, list)
        return cls(
            rate=_float_or_none(data.get("rate")),
            burst=_float_or_none(data.get("burst")),
            concurrency=_int_or_none(data.get("concurrency")),
            quotas=tuple(parse_quotas(",".join(map(str, quotas)))),
        )


NO_LIMITS = KeyLimits()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiKey:
    """A key's record (never its secret)."""

    id: str
    name: str
    tenant: str
    scopes: frozenset[Scope]
    endpoints: frozenset[str] | None = None  # None: every endpoint
    limits: KeyLimits = NO_LIMITS
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.usable(now) else "expired"

    def public(self, now: float) -> dict[str, object]:
        """What the admin API and ``anypod keys list`` show."""
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "endpoints": None if self.endpoints is None else sorted(self.endpoints),
            "limits": self.limits.to_json(),
            "state": self.state(now),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_at": _iso(self.rotated_at),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerToken:
    id: str
    endpoint: str
    name: str
    created_at: float
    revoked_at: float | None = None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "name": self.name,
            "state": "revoked" if self.revoked_at is not None else "active",
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
        }


# --- secrets -----------------------------------------------------------------------------------


def new_id() -> str:
    return secrets.token_hex(6)


def new_secret(prefix: str, record_id: str) -> str:
    return f"{prefix}_{record_id}_{secrets.token_urlsafe(32)}"


def record_id(secret: str, prefix: str) -> str | None:
    """The id part of a well-formed secret of that kind; None for anything else."""
    head, sep, rest = secret.partition("_")
    found, sep2, tail = rest.partition("_")
    if head != prefix or not sep or not sep2 or not tail or not _ID.fullmatch(found):
        return None
    return found


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- what people type --------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]{1,9})\s*(s|m|h|d|w)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RATE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*/\s*(s|sec|second|m|min|minute|h|hour)")
MAX_LIFETIME = 3650 * 86400.0  # ten years
MIN_RATE, MAX_RATE = 1 / 3600, 1_000_000.0  # requests per second
MAX_COUNT = 10**15  # quota limits
MAX_CONCURRENCY = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_duration(text: str, field: str = "expires") -> float:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` → seconds."""
    m = _DURATION.fullmatch(text.strip())
    seconds = int(m.group(1)) * _SECONDS[m.group(2)] if m else 0
    if not 0 < seconds <= MAX_LIFETIME:
        raise errors.InvalidRequest(
            f"{field}: want a duration like 30d, 12h or 90m, at most 3650d", field=field
        )
    return float(seconds)


def parse_rate(text: str) -> float:
    """``20/s``, ``600/min``, ``1000/h`` → requests per second."""
    m = _RATE.fullmatch(text.strip())
    rate = float(m.group(1)) / _PER[m.group(2)] if m else 0.0
    if not MIN_RATE <= rate <= MAX_RATE:
        raise errors.InvalidRequest(
            "rate: want requests per time, like 20/s, from 1/h to 1000000/s", field="rate"
        )
    return rate


def parse_quotas(text: str) -> list[Quota]:
    """``jobs=10000/month,gpu_seconds=36000/month``."""
    found: list[Quota] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        meter, _, rest = part.partition("=")
        limit, _, period = rest.partition("/")
        try:
            if not limit.strip().isascii() or not limit.strip().isdigit():
                raise ValueError(limit)
            quota = Quota(Meter(meter.strip()), int(limit), Period(period.strip() or "month"))
        except ValueError:
            raise errors.InvalidRequest(
                f"quota: {part!r}: want METER=N/PERIOD, METER one of "
                f"{', '.join(Meter)}, PERIOD day or month",
                field="quota",
            ) from None
        if quota.limit > MAX_COUNT:
            raise errors.InvalidRequest(f"quota: the limit must be <= {MAX_COUNT}", field="quota")
        found.append(quota)
    return found


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    try:
        scopes = frozenset(Scope(v.strip()) for v in values if v.strip())
    except ValueError:
        raise errors.InvalidRequest(
            f"scopes: each one of {', '.join(Scope)}", field="scopes"
        ) from None
    if not scopes:
        raise errors.InvalidRequest("scopes: give at least one", field="scopes")
    return scopes


def check_name(value: str, field: str) -> str:
    if not _NAME.fullmatch(value):
        raise errors.InvalidRequest(
            f"{field}: 1-64 characters: letters, digits and _ . : @ - (not first)", field=field
        )
    return value


def check_label(value: str, field: str) -> str:
    """Free text shown in listings: at most 64 characters, no control characters."""
    if len(value) > 64 or _CONTROL.search(value):
        raise errors.InvalidRequest(
            f"{field}: at most 64 characters, no control characters", field=field
        )
    return value


def check_endpoints(values: Iterable[str]) -> frozenset[str]:
    found = frozenset(check_name(v.strip(), "endpoints") for v in values if v.strip())
    if not found or len(found) > MAX_ENDPOINTS:
        raise errors.InvalidRequest(f"endpoints: 1 to {MAX_ENDPOINTS} names", field="endpoints")
    return found


# --- records as stored -------------------------------------------------------------------------


def encode_set(values: Iterable[str] | None) -> str | None:
    return None if values is None else ",".join(sorted(values))


def decode_set(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(filter(None, text.split(",")))


def encode_limits(limits: KeyLimits) -> str:
    return orjson.dumps(limits.to_json()).decode()


def decode_limits(text: str | None) -> KeyLimits:
    return NO_LIMITS if not text else KeyLimits.from_json(orjson.loads(text))


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds")


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
