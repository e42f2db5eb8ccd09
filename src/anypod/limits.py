"""A key's limits, enforced: requests per second (a token bucket), unfinished jobs at once, and
quotas per day or month (jobs submitted, execution seconds).

The bucket lives in the store, so every replica draws from the same one. A replica takes a few
tokens at a time (a twentieth of a second's worth, at least one) and spends them locally for up
to :data:`LEASE_SECONDS`: a key limited to 20/s costs a store write per request, one allowed
10,000/s one per 500 requests. Unspent tokens lapse, so across replicas the limit is never
exceeded, only briefly under-used. The concurrency cap is checked inside the submit itself
(:meth:`Store.submit_capped`), so concurrent submits on several replicas cannot pass it.
A job quota is a counter per period in the store. A replica charges it a few jobs at a time
(a 200th of the quota, 1 to 50: a quota of 100 or less is charged job by job) and spends them
locally for up to :data:`RESERVE_SECONDS`, handing back what it did not spend; a charge past
the limit is taken back at once. So no number of replicas or concurrent submits passes a
quota; near its end, jobs another replica holds may be refused here (at most a 200th each). An
execution-time quota compares the stored usage (re-read at most once a second) plus this
replica's unwritten counts with the limit: execution time is known only as jobs end.

Over a limit: :class:`errors.RateLimited`, with ``Retry-After`` and the IETF
``RateLimit-Policy`` / ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable

from anypod import errors, jobs, keys
from anypod.store import Store
from anypod.store.tenancy import UsageCounts, day_of
from anypod.usage import UsageMeter

LEASE_SECONDS = 0.25
RESERVE_SECONDS = 1.0
LEASE_SHARE = 0.05  # of a second's worth of the rate
USAGE_CACHE_SECONDS = 1.0


@dataclasses.dataclass
class _Reserve:
    """Jobs of a key's quotas this replica has charged and not spent yet."""

    periods: list[str]
    left: float
    until: float
    day: int  # the UTC day it was made on (its periods are that day's)


def _day(now: float) -> int:
    return int(now // 86400)


def _chunk(limit: int) -> int:
    """Jobs charged at a time: a 200th of the quota, 1 to 50 (a quota of 100 is exact)."""
    return max(1, min(50, limit // 200))


@dataclasses.dataclass
class _Lease:
    tokens: float
    until: float


class Limiter:
    def __init__(self, store: Store, usage: UsageMeter, *, clock: Callable[[], float]) -> None:
        self.store = store
        self.usage = usage
        self.clock = clock
        self._leases: dict[str, _Lease] = {}
        self._reserved: dict[str, _Reserve] = {}
        self._used: dict[tuple[str, str], tuple[float, UsageCounts]] = {}

    async def admit(self, key: keys.ApiKey) -> None:
        """One request of ``key``: raises :class:`errors.RateLimited` over its rate."""
        rate = key.limits.rate
        if rate is None:
            return
        now = self.clock()
        lease = self._leases.get(key.id)
        if lease is None or lease.until <= now or lease.tokens < 1:
            want = max(1.0, rate * LEASE_SHARE)
            granted, left = await self.store.take_tokens(
                key.id, rate=rate, burst=key.limits.bucket, want=want, now=now
            )
            if granted < 1:
                raise _over_rate(key, rate, left)
            lease = self._leases[key.id] = _Lease(granted, now + LEASE_SECONDS)
            if len(self._leases) > 10_000:
                self._leases = {key.id: lease}
        lease.tokens -= 1

    async def take_job(self, key: keys.ApiKey) -> None:
        """One job against each of the key's job quotas: from this replica's reservation, or
        a new one charged atomically on the shared counters; :class:`errors.RateLimited` when
        a quota is used up. :meth:`give_back` if the job is not made after all."""
        now = self.clock()
        held = self._reserved.get(key.id)
        if held is not None and held.left >= 1 and now < held.until and held.day == _day(now):
            held.left -= 1  # the common case: periods change only when the day does
            return
        quotas = [q for q in key.limits.quotas if q.meter is keys.Meter.JOBS]
        if not quotas:
            return
        periods = [_period(q, now) for q in quotas]
        await self._release(key.id)
        size = float(min(_chunk(q.limit) for q in quotas))
        totals = await self.store.charge(key.id, periods, size)
        room = [min(size, q.limit - (t - size)) for q, t in zip(quotas, totals, strict=True)]
        granted = max(0.0, min(room))
        if granted < size:
            await self.store.refund(key.id, periods, size - granted)
        if granted < 1:
            quota = quotas[room.index(min(room))]
            raise _over_quota(key, quota, now)
        self._reserved[key.id] = _Reserve(periods, granted - 1, now + RESERVE_SECONDS, _day(now))

    def give_back(self, key: keys.ApiKey) -> None:
        """A job :meth:`take_job` counted was not made: its place goes back to the reservation."""
        held = self._reserved.get(key.id)
        if held is None:
            now = self.clock()
            quotas = [q for q in key.limits.quotas if q.meter is keys.Meter.JOBS]
            if not quotas:
                return
            periods = [_period(q, now) for q in quotas]
            held = self._reserved[key.id] = _Reserve(periods, 0.0, now + RESERVE_SECONDS, _day(now))
        held.left += 1

    async def _release(self, key_id: str) -> None:
        """Hand the unspent part of a reservation back to the shared counters."""
        held = self._reserved.pop(key_id, None)
        if held is not None and held.left > 0:
            await self.store.refund(key_id, held.periods, held.left)

    name = "limits"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Give back every reservation (a replica killed with -9 loses at most its chunks)."""
        for key_id in list(self._reserved):
            with contextlib.suppress(errors.AnypodError):
                await self._release(key_id)

    async def submit(self, new: jobs.NewJob, key: keys.ApiKey) -> jobs.Job:
        """Make the job within the key's quotas (counted first, given back if no job is made)
        and its cap on unfinished jobs (checked in the insert itself)."""
        await self.check_time_quotas(key)
        await self.take_job(key)
        cap, job = key.limits.concurrency, None
        try:
            job = await (
                self.store.submit(new) if cap is None else self.store.submit_capped(new, cap)
            )
        finally:
            if job is None:
                self.give_back(key)
        if job is None:
            raise over_concurrency(key)
        return job

    async def admit_retry(self, owner: keys.ApiKey) -> None:
        """A retry within its owner's cap on unfinished jobs and quotas (counted: give it back
        with :meth:`give_back` if the job cannot be retried after all)."""
        cap = owner.limits.concurrency
        if cap is not None and await self.store.open_jobs(owner.id) >= cap:
            raise over_concurrency(owner)
        await self.check_time_quotas(owner)
        await self.take_job(owner)

    async def check_time_quotas(self, key: keys.ApiKey) -> None:
        """Before a job: refused once the key's execution seconds reach a quota. (They are
        known only as jobs end: jobs already running may take the total past it.)"""
        now = self.clock()
        for quota in key.limits.quotas:
            if quota.meter is not keys.Meter.GPU_SECONDS:
                continue
            since = day_of(quota.period.start(now))
            stored, pending = await self._usage(key.id, since), self.usage.pending(key.id, since)
            if (stored.execution_ms + pending.execution_ms) / 1000 >= quota.limit:
                raise _over_quota(key, quota, now)

    async def _usage(self, key_id: str, since: str) -> UsageCounts:
        now = self.clock()
        cached = self._used.get((key_id, since))
        if cached is None or now - cached[0] >= USAGE_CACHE_SECONDS:
            cached = (now, await self.store.usage_since(key_id, since))
            if len(self._used) > 10_000:
                self._used.clear()
            self._used[(key_id, since)] = cached
        return cached[1]


def over_concurrency(key: keys.ApiKey) -> errors.RateLimited:
    cap = key.limits.concurrency
    return errors.RateLimited(
        f"key {key.id} has {cap} unfinished jobs, its concurrency limit; "
        "submit again when one ends",
        limit="concurrency",
        retry_after=1.0,
        headers=_headers("concurrency", cap or 0, 1, 0, 1.0),
    )


def _over_rate(key: keys.ApiKey, rate: float, left: float) -> errors.RateLimited:
    wait = max(0.001, (1 - left) / rate)
    return errors.RateLimited(
        f"key {key.id} is over its rate limit of {rate:g} requests/s",
        limit="rate",
        retry_after=round(wait, 3),  # the header rounds up to whole seconds
        headers=_headers(
            "rate", key.limits.bucket, max(1, round(key.limits.bucket / rate)), 0, wait
        ),
    )


def _window(key: keys.ApiKey, rate: float) -> int:
    """The seconds in which the bucket's worth of requests is allowed (at least 1)."""
    return max(1, round(key.limits.bucket / rate))


def _period(quota: keys.Quota, now: float) -> str:
    """The counter of the quota's current period: ``jobs:month:2026-12-01``."""
    return f"{quota.meter}:{quota.period}:{day_of(quota.period.start(now))}"


def _over_quota(key: keys.ApiKey, quota: keys.Quota, now: float) -> errors.RateLimited:
    wait = quota.period.end(now) - now
    window = round(quota.period.end(now) - quota.period.start(now))
    return errors.RateLimited(
        f"key {key.id} has used its quota of {quota.limit} {quota.meter} per {quota.period}",
        limit=f"quota:{quota.meter}",
        retry_after=float(math.ceil(wait)),
        headers=_headers(f"quota-{quota.meter}", quota.limit, window, 0, wait),
    )


def _headers(name: str, quota: float, window: int, left: float, wait: float) -> dict[str, str]:
    reset = max(1, math.ceil(wait))
    return {
        "Retry-After": str(reset),
        "RateLimit-Policy": f'"{name}";q={quota:g};w={window}',
        "RateLimit": f'"{name}";r={max(0, math.floor(left))};t={reset}',
    }
