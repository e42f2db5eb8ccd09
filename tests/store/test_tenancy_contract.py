"""The store's tenancy half (keys, worker tokens, buckets, capped submits, usage, audit), the
same on every backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import orjson
import pytest

from anypod import errors, jobs, keys
from anypod import store as stores
from anypod.store import Store
from anypod.store.sqlite import SQLiteStore
from anypod.store.tenancy import (
    AuditEntry,
    AuditQuery,
    UsageCounts,
    UsageKey,
    UsageQuery,
    UsageRow,
)

T0 = 1_800_000_000.0


def api_key(key_id: str, tenant: str = "t1", **kw: object) -> keys.ApiKey:
    fields: dict[str, object] = {
        "id": key_id,
        "name": f"name-{key_id}",
        "tenant": tenant,
        "scopes": keys.DEFAULT_SCOPES,
        "created_at": T0,
        **kw,
    }
    return keys.ApiKey(**fields)  # type: ignore[arg-type]


def new_job(job_id: str, owner: str | None) -> jobs.NewJob:
    return jobs.NewJob(
        id=job_id,
        endpoint="ep",
        input=orjson.dumps({"n": job_id}),
        created_at=T0,
        policy=jobs.Policy(execution_timeout_ms=30_000, ttl_ms=60_000),
        owner=owner,
        retention_ms=60_000,
        max_attempts=2,
    )


async def test_keys_round_trip_revoke_and_rotate(store: Store) -> None:
    limits = keys.KeyLimits(rate=20.0, concurrency=5, quotas=tuple(keys.parse_quotas("jobs=9/day")))
    key = api_key("aaaaaaaaaaaa", endpoints=frozenset({"a", "b"}), limits=limits, expires_at=T0 + 9)
    assert not await store.has_keys()
    await store.add_key(key, "hash-1")
    assert await store.has_keys()
    stored = await store.get_key("aaaaaaaaaaaa")
    assert stored is not None and stored.key == key and stored.secret_hash == "hash-1"
    with pytest.raises(errors.Conflict):
        await store.add_key(key, "hash-2")
    await store.add_key(api_key("bbbbbbbbbbbb", tenant="t2", created_at=T0 + 1), "hash-3")
    assert [k.id for k in await store.list_keys(None)] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert [k.id for k in await store.list_keys("t2")] == ["bbbbbbbbbbbb"]
    assert await store.tenant_key_ids("t1") == ["aaaaaaaaaaaa"]
    assert await store.rotate_key("aaaaaaaaaaaa", "hash-9", T0 + 2)
    rotated = await store.get_key("aaaaaaaaaaaa")
    assert rotated is not None and rotated.secret_hash == "hash-9"
    assert rotated.key.rotated_at == T0 + 2
    assert await store.revoke_key("aaaaaaaaaaaa", T0 + 3)
    assert not await store.revoke_key("aaaaaaaaaaaa", T0 + 4)  # once
    assert not await store.rotate_key("aaaaaaaaaaaa", "hash-10", T0 + 5)  # revoked stays so
    assert not await store.revoke_key("cccccccccccc", T0)
    assert await store.get_key("cccccccccccc") is None


async def test_worker_tokens(store: Store) -> None:
    token = keys.WorkerToken(id="tok1", endpoint="ep", name="gpu-box", created_at=T0)
    await store.add_token(token, "hash1")
    assert await store.token_by_hash("hash1") == token
    assert await store.token_by_hash("other") is None
    await store.add_token(dataclasses.replace(token, id="tok2", endpoint="ep2"), "hash2")
    assert [t.id for t in await store.list_tokens("ep")] == ["tok1"]
    assert len(await store.list_tokens(None)) == 2
    assert await store.revoke_token("tok1", T0 + 1)
    assert not await store.revoke_token("tok1", T0 + 2)
    revoked = await store.token_by_hash("hash1")
    assert revoked is not None and revoked.revoked_at == T0 + 1


async def test_token_bucket_refills_at_rate_up_to_burst(store: Store) -> None:
    take = store.take_tokens
    assert await take("k", rate=2.0, burst=3.0, want=2.0, now=T0) == (2.0, 1.0)
    assert await take("k", rate=2.0, burst=3.0, want=2.0, now=T0) == (1.0, 0.0)
    assert await take("k", rate=2.0, burst=3.0, want=1.0, now=T0 + 0.25) == (0.0, 0.5)
    granted, left = await take("k", rate=2.0, burst=3.0, want=1.0, now=T0 + 0.5)
    assert (granted, left) == (1.0, 0.0)
    granted, left = await take("k", rate=2.0, burst=3.0, want=9.0, now=T0 + 100)
    assert (granted, left) == (3.0, 0.0)  # never more than the burst
    assert (await take("other", rate=2.0, burst=3.0, want=1.0, now=T0))[0] == 1.0


async def test_capped_submit_counts_only_unfinished_jobs_of_the_owner(store: Store) -> None:
    assert await store.submit_capped(new_job("a1", "ka"), 2) is not None
    assert await store.submit_capped(new_job("a2", "ka"), 2) is not None
    assert await store.submit_capped(new_job("a3", "ka"), 2) is None
    assert await store.get("a3") is None
    assert await store.submit_capped(new_job("b1", "kb"), 2) is not None  # another owner
    assert await store.open_jobs("ka") == 2
    await store.end("a1", jobs.cancel(T0 + 1))
    assert await store.open_jobs("ka") == 1
    assert await store.submit_capped(new_job("a3", "ka"), 2) is not None


async def test_capped_submits_at_once_never_pass_the_cap(store: Store) -> None:
    made = await asyncio.gather(*(store.submit_capped(new_job(f"c{i}", "k"), 3) for i in range(12)))
    assert sum(job is not None for job in made) == 3
    assert await store.open_jobs("k") == 3


async def test_purge_and_counts_of_some_owners(store: Store) -> None:
    for job_id, owner in (("p1", "ka"), ("p2", "kb"), ("p3", None)):
        await store.submit(new_job(job_id, owner))
    assert (await store.counts("ep", ["ka"])).in_queue == 1
    assert (await store.counts("ep")).in_queue == 3
    assert await store.purge_queue("ep", jobs.cancel(T0 + 1), ["ka"]) == ["ka"]
    assert (await store.get("p2")) is not None and (await store.counts("ep")).in_queue == 2
    assert sorted(map(str, await store.purge_queue("ep", jobs.cancel(T0 + 1)))) == ["None", "kb"]


async def test_usage_adds_up_per_day_key_and_endpoint(store: Store) -> None:
    day1, day2 = UsageKey("2027-01-01", "k1", "ep", "t1"), UsageKey("2027-01-02", "k1", "ep", "t1")
    await store.add_usage([UsageRow(day1, UsageCounts(submitted=2, bytes_in=10))])
    await store.add_usage(
        [
            UsageRow(day1, UsageCounts(completed=1, execution_ms=1500, bytes_out=7)),
            UsageRow(day2, UsageCounts(submitted=1, failed=1)),
            UsageRow(UsageKey("2027-01-02", "k2", "ep", "t2"), UsageCounts(submitted=5)),
        ]
    )
    rows = await store.usage(UsageQuery(key_id="k1"))
    assert [r.key.day for r in rows] == ["2027-01-02", "2027-01-01"]
    assert rows[1].counts == UsageCounts(
        submitted=2, completed=1, execution_ms=1500, bytes_in=10, bytes_out=7
    )
    assert [r.key.key_id for r in await store.usage(UsageQuery(tenant="t2"))] == ["k2"]
    assert len(await store.usage(UsageQuery(since_day="2027-01-02"))) == 2
    total = await store.usage_since("k1", "2027-01-01")
    assert (total.submitted, total.failed, total.execution_ms) == (3, 1, 1500)
    assert await store.usage_since("nobody", "2027-01-01") == UsageCounts()


async def test_audit_log_appends_pages_and_expires(store: Store) -> None:
    entries = [
        AuditEntry(at=T0 + i, action=action, actor="k1", tenant="t1", target=f"x{i}")
        for i, action in enumerate(["key.create", "job.cancel", "key.revoke", "auth.failed"])
    ]
    await store.append_audit(entries)
    newest = await store.audit(AuditQuery(limit=2))
    assert [e.action for e in newest] == ["auth.failed", "key.revoke"]
    assert newest[0].seq is not None and newest[1].seq is not None
    older = await store.audit(AuditQuery(before_seq=newest[1].seq))
    assert [e.action for e in older] == ["job.cancel", "key.create"]
    assert [e.target for e in await store.audit(AuditQuery(action="key."))] == ["x2", "x0"]
    assert [e.target for e in await store.audit(AuditQuery(action="key"))] == []
    assert len(await store.audit(AuditQuery(since=T0 + 2))) == 2
    assert await store.purge_audit(T0 + 2) == 2
    assert [e.action for e in await store.audit(AuditQuery())] == ["auth.failed", "key.revoke"]


async def test_quota_counters_charge_refund_and_expire(store: Store) -> None:
    periods = ["jobs:day:2027-01-02", "jobs:month:2027-01-01"]
    assert await store.charge("k", periods, 1.0) == [1.0, 1.0]
    assert await store.charge("k", periods, 1.0) == [2.0, 2.0]
    await store.refund("k", periods, 1.0)
    assert await store.charge("k", periods[:1], 1.0) == [2.0]
    assert await store.charge("other", periods[:1], 1.0) == [1.0]
    assert await store.purge_quota_counters("2027-01-02") == 1  # the month's (from the 1st)
    assert await store.charge("k", periods, 1.0) == [3.0, 1.0]


async def test_concurrent_charges_never_share_a_total(store: Store) -> None:
    totals = await asyncio.gather(*(store.charge("k", ["jobs:day:x"], 1.0) for _ in range(20)))
    assert sorted(t[0] for t in totals) == [float(n) for n in range(1, 21)]


async def test_sqlite_counts_a_keys_open_jobs_through_its_index(tmp_path: Path) -> None:
    """The cap's count must use jobs_owner_open (SQLite matches a partial index's WHERE only
    as written): a scan would make every capped submit O(jobs)."""
    async with stores.from_url(f"sqlite:///{tmp_path / 'plan.db'}", migrate=True) as store:
        assert isinstance(store, SQLiteStore)
        statement = store.t.SUBMIT_CAPPED
        with sqlite3.connect(tmp_path / "plan.db") as conn:
            plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}", [None] * 16).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING INDEX jobs_owner_open" in details and "SCAN jobs" not in details
