"""The limiter on a shared store: two limiters stand for two replicas. Job quotas are reserved a
few at a time yet never passed, unspent reservations go back, and the rate bucket is shared."""

from __future__ import annotations

import pytest

from anypod import access, errors
from anypod.limits import RESERVE_SECONDS, Limiter, _chunk
from anypod.store import Store
from anypod.store.memory import MemoryStore
from anypod.usage import UsageMeter
from tests.clock import Clock

T0 = 1_800_000_000.0


async def limiter(store: Store, clock: Clock) -> Limiter:
    async def tenant(owner: str | None) -> str | None:
        return "t"

    return Limiter(store, UsageMeter(store, tenant, clock=clock), clock=clock)


@pytest.fixture
async def store() -> Store:
    opened = MemoryStore()
    await opened.open()
    return opened


def key(quota: str = "", rate: str | None = None) -> access.KeySpec:
    return access.KeySpec.parse(name="k", quota=quota or None, rate=rate)


async def made(store: Store, spec: access.KeySpec) -> access.NewKey:
    return await access.Credentials(store).create_key(spec)


def test_chunks_are_a_200th_of_the_quota_from_1_to_50() -> None:
    assert [_chunk(n) for n in (1, 100, 399, 400, 2000, 10**9)] == [1, 1, 1, 2, 10, 50]


async def test_two_replicas_never_pass_a_quota_reserved_in_chunks(store: Store) -> None:
    clock = Clock(T0)
    new = await made(store, key("jobs=2000/day"))  # chunks of 10
    one, two = await limiter(store, clock), await limiter(store, clock)
    admitted = 0
    for i in range(2100):
        try:
            await (one if i % 3 else two).take_job(new.key)
            admitted += 1
        except errors.RateLimited as exc:
            assert exc.limit == "quota:jobs"
    assert admitted == 2000


async def test_unspent_reservations_go_back(store: Store) -> None:
    clock = Clock(T0)
    new = await made(store, key("jobs=2000/day"))
    one, two = await limiter(store, clock), await limiter(store, clock)
    await one.take_job(new.key)  # charges 10, spends 1
    await one.stop()  # hands 9 back
    for _ in range(1999):
        await two.take_job(new.key)
    with pytest.raises(errors.RateLimited):
        await two.take_job(new.key)
    clock.now += RESERVE_SECONDS + 1  # a lapsed reservation goes back on the next take
    two.give_back(new.key)
    await two.take_job(new.key)


async def test_a_small_quota_is_counted_job_by_job(store: Store) -> None:
    clock = Clock(T0)
    new = await made(store, key("jobs=3/day"))
    one, two = await limiter(store, clock), await limiter(store, clock)
    await one.take_job(new.key)
    await two.take_job(new.key)
    one.give_back(new.key)  # that job was not made
    await one.take_job(new.key)
    await two.take_job(new.key)
    for replica in (one, two):
        with pytest.raises(errors.RateLimited):
            await replica.take_job(new.key)
    clock.now += 86_400  # a new day
    await one.take_job(new.key)


async def test_the_rate_bucket_is_shared(store: Store) -> None:
    clock = Clock(T0)
    new = await made(store, key(rate="4/s"))
    one, two = await limiter(store, clock), await limiter(store, clock)
    admitted = 0
    for i in range(10):
        try:
            await (one if i % 2 else two).admit(new.key)
            admitted += 1
        except errors.RateLimited as exc:
            assert exc.limit == "rate" and exc.retry_after > 0
    assert admitted == 4
    clock.now += 0.5
    await one.admit(new.key)  # two tokens back
