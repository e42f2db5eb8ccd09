"""Claim latency against queue depth: is a PostgreSQL claim O(log n) in queued jobs?

    python -m benchmarks.queue_depth                              # 1,000 vs 1,000,000 queued
    python -m benchmarks.queue_depth --depths 1000 100000 --claims 300

For each depth, the ``jobs`` table of a fresh database (``Store.open`` migrates it) is emptied
and refilled: ``2 x --claims`` jobs for endpoint ``ep`` through the store's public
``Store.submit_many`` (the oldest, so the claims take them), then ``depth`` queued jobs on each of
``ep`` and ``other`` (every tenth low priority, so the index serves more than one queue and
priority) in one ``INSERT ... SELECT generate_series`` (this benchmark's fixture, written
against ``src/anypod/store/migrations/postgres/``), then ``VACUUM ANALYZE``. It prints the plan
of the store's own CLAIM statement (``anypod.store.sql``; ``EXPLAIN (ANALYZE, BUFFERS)``, rolled
back), times ``--claims`` claims of one job through ``Store.claim`` one at a time (p50/p99), and
as many again by 8 concurrent claimers (claims/s). Baseline, in the same run: the deepest queue
with the partial index ``jobs_queue`` dropped, which the ratio at the end compares against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from anypod import jobs
from anypod.store import Store, from_url, sql
from benchmarks.harness import load, pg, report, stats, sut

BULK = """
INSERT INTO jobs (id, endpoint, status, priority, input, execution_timeout_ms, ttl_ms,
                  low_priority, retention_ms, max_attempts, created_at, expires_at)
SELECT e || '-' || g, e, 'IN_QUEUE', CASE WHEN g % 10 = 0 THEN -1 ELSE 0 END,
       convert_to('{"prompt": "a cat", "seed": ' || g || '}', 'UTF8'), 600000, 86400000,
       g % 10 = 0, 1800000, 3, $2 + g / 1e6, $2 + 86400
FROM generate_series(1, $1) AS g, unnest(ARRAY['ep', 'other']) AS e
"""


def new_job(i: int, now: float) -> jobs.NewJob:
    return jobs.NewJob(
        id=f"claim-{i}",
        endpoint="ep",
        input=json.dumps({"prompt": "a cat", "seed": i}).encode(),
        policy=jobs.Policy(),
        retention_ms=1_800_000,
        max_attempts=3,
        created_at=now,
    )


async def fill(store: Store, conn: Any, depth: int, to_claim: int) -> float:
    began = time.perf_counter()
    await conn.execute("TRUNCATE jobs, stream_chunks")
    await store.submit_many([new_job(i, time.time()) for i in range(to_claim)])
    await conn.execute(BULK, depth, time.time())
    await conn.execute("VACUUM ANALYZE jobs")
    return time.perf_counter() - began


def claim_one(store: Store, worker: str) -> Awaitable[list[jobs.Job]]:
    now = time.time()
    return store.claim(
        "ep", 1, jobs.Claim(worker_id=worker, started_at=now, lease_expires_at=now + 30)
    )


async def one_at_a_time(store: Store, n: int) -> stats.Summary:
    async def claim(i: int) -> None:
        if len(await claim_one(store, f"w{i}")) != 1:
            raise RuntimeError("the queue ran dry")

    return stats.summary(await load.sequential(n, claim, limit=600))


async def concurrent(store: Store, n: int, claimers: int = 8) -> float:
    async def claim(client: int, i: int) -> None:
        await claim_one(store, f"c{client}")

    return n / await load.closed_loop(claimers, claim, n, seconds=600)


async def measure(store: Store, conn: Any, depth: int, n: int) -> dict[str, Any]:
    loaded = await fill(store, conn, depth, 2 * n)
    print(f"\n== {depth:,} queued on each of 2 endpoints (+{2 * n} to claim); load {loaded:.1f} s")
    now = time.time()
    plan = await pg.explain(conn, sql.for_dialect("postgres").CLAIM, "w", now, now + 30, "ep", 1)
    print("\n".join("    " + line for line in plan))
    one, per_s = await one_at_a_time(store, n), await concurrent(store, n)
    print(
        f"   one at a time: p50 {one.p50:.3f} ms  p99 {one.p99:.3f} ms;  8 claimers: {per_s:.0f}/s"
    )
    return {"depth": depth, "one_at_a_time_ms": one, "claims_s": per_s, "plan": plan}


async def main(args: argparse.Namespace) -> None:
    source = sut.Anypod().identity()
    print(report.header(source))
    async with pg.fresh_database(args.url, f"anypod_bench_depth_{os.getpid()}") as url:
        async with from_url(url, migrate=True) as store:
            conn = await pg.connect(url)
            try:
                results = [await measure(store, conn, d, args.claims) for d in args.depths]
                await conn.execute("DROP INDEX jobs_queue")
                print("\n-- baseline: the deepest queue WITHOUT the partial index jobs_queue --")
                base = await measure(store, conn, max(args.depths), args.baseline_claims)
            finally:
                await conn.close()
    rows = [
        [
            f"{r['depth']:,}" + ("" if r is not base else ", no index"),
            f"{r['one_at_a_time_ms'].p50:.3f}",
            f"{r['one_at_a_time_ms'].p99:.3f}",
            f"{r['claims_s']:.0f}",
        ]
        for r in [*results, base]
    ]
    print("\n" + report.table(["queued per endpoint", "p50 ms", "p99 ms", "claims/s (8)"], rows))
    shallow, deep = (min(results, key=lambda r: r["depth"]), max(results, key=lambda r: r["depth"]))
    p50 = {k: r["one_at_a_time_ms"].p50 for k, r in (("lo", shallow), ("hi", deep), ("no", base))}
    print(
        f"p50 at {deep['depth']:,} / at {shallow['depth']:,}: {p50['hi'] / p50['lo']:.2f}x;  "
        f"without the index / with it at {deep['depth']:,}: {p50['no'] / p50['hi']:.0f}x"
    )
    if args.json:
        report.write_json(args.json, args, source, results=results, baseline=base)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=pg.ADMIN_URL, help="admin URL; a fresh database is made")
    p.add_argument("--depths", type=int, nargs="+", default=[1_000, 1_000_000])
    p.add_argument("--claims", type=int, default=1000, help="claims timed per depth")
    p.add_argument("--baseline-claims", type=int, default=30)
    p.add_argument("--json", type=Path)
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
