#!/usr/bin/env python
"""Claim latency against queue depth: is a PostgreSQL claim O(log n) in queued jobs?

    python benchmarks/queue_depth.py                              # 1,000 vs 1,000,000 queued
    python benchmarks/queue_depth.py --depths 1000 100000 --claims 300

For each depth, a fresh ``jobs`` table gets ``depth + claims`` queued jobs (one
``INSERT ... SELECT generate_series``; every tenth job low priority, a second endpoint holding
as many jobs again, so the index serves more than one queue), then ``VACUUM ANALYZE``. It
prints the claim's plan (``EXPLAIN (ANALYZE, BUFFERS)``, rolled back) and times ``--claims``
claims of one job through :meth:`PostgresStore.claim`, one at a time (p50/p99), then the same
number again by 8 concurrent claimers (claims/s). Baseline, in the same run: the deepest queue
with the partial index ``jobs_queue`` dropped, which the ratio at the end compares against.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from anypod.store import postgres_sql as q
from anypod.store.postgres import PostgresStore

LOAD = """
INSERT INTO jobs (id, endpoint, status, priority, input, execution_timeout_ms, ttl_ms,
                  low_priority, retention_ms, max_attempts, created_at, expires_at)
SELECT e || '-' || g, e, 'IN_QUEUE', CASE WHEN g % 10 = 0 THEN -1 ELSE 0 END,
       convert_to('{"prompt": "a cat", "seed": ' || g || '}', 'UTF8'), 600000, 86400000,
       g % 10 = 0, 1800000, 3, $2 + g / 1e6, $2 + 86400
FROM generate_series(1, $1) AS g, unnest(ARRAY['ep', 'other']) AS e
"""


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def load(conn: asyncpg.Connection, rows: int) -> float:
    began = time.perf_counter()
    await conn.execute("TRUNCATE jobs, stream_chunks")
    await conn.execute(LOAD, rows, time.time())
    await conn.execute("VACUUM ANALYZE jobs")
    return time.perf_counter() - began


async def plan(conn: asyncpg.Connection) -> str:
    now = time.time()
    tx = conn.transaction()
    await tx.start()
    try:
        rows = await conn.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {q.CLAIM}", "w", now, now + 30, "ep", 1
        )
    finally:
        await tx.rollback()
    return "\n".join("    " + r[0] for r in rows)


async def claims(store: PostgresStore, n: int) -> dict[str, float]:
    latencies = []
    for i in range(n):
        now = time.time()
        began = time.perf_counter()
        taken = await store.claim("ep", f"w{i}", 1, now, now + 30)
        latencies.append(time.perf_counter() - began)
        assert len(taken) == 1
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


async def concurrent_claims(store: PostgresStore, n: int, tasks: int = 8) -> float:
    left = iter(range(n))

    async def claimer(name: str) -> None:
        for _ in left:
            now = time.time()
            await store.claim("ep", name, 1, now, now + 30)

    began = time.perf_counter()
    await asyncio.gather(*(claimer(f"c{t}") for t in range(tasks)))
    return n / (time.perf_counter() - began)


async def measure(store: PostgresStore, conn: asyncpg.Connection, depth: int, n: int) -> dict:
    loaded = await load(conn, depth + 2 * n)
    print(f"\n== {depth:,} queued (+{2 * n} to claim) on each of 2 endpoints; load {loaded:.1f}s")
    print(await plan(conn))
    result = await claims(store, n)
    result["claims_s"] = await concurrent_claims(store, n)
    print(
        f"   one at a time: p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms;"
        f"  8 claimers: {result['claims_s']:.0f} claims/s"
    )
    return result


async def main(args: argparse.Namespace) -> None:
    name = f"anypod_bench_depth_{os.getpid()}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(args.url, name)
    try:
        async with PostgresStore(url, migrate=True, max_connections=8) as store:
            conn = await asyncpg.connect(url)
            try:
                results = {d: await measure(store, conn, d, args.claims) for d in args.depths}
                deepest = max(args.depths)
                await conn.execute("DROP INDEX jobs_queue")
                print("\n-- baseline: the deepest queue WITHOUT the partial index jobs_queue --")
                baseline = await measure(store, conn, deepest, args.baseline_claims)
            finally:
                await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    report(results, baseline, deepest)


def report(results: dict[int, dict[str, float]], baseline: dict[str, float], deepest: int) -> None:
    shallow = min(results)
    print(f"\n{'queued':>12}{'p50 ms':>9}{'p99 ms':>9}{'claims/s':>10}")
    for depth, r in results.items():
        print(f"{depth:>12,}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['claims_s']:>10.0f}")
    b = baseline
    print(f"{'no index':>12}{b['p50_ms']:>9.3f}{b['p99_ms']:>9.3f}{b['claims_s']:>10.0f}")
    deep = results[deepest]
    print(
        f"p50 at {deepest:,} / at {shallow:,}: {deep['p50_ms'] / results[shallow]['p50_ms']:.2f}x;"
        f"  without the index / with it at {deepest:,}: {b['p50_ms'] / deep['p50_ms']:.0f}x"
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--depths", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--claims", type=int, default=1000, help="claims timed per depth")
    parser.add_argument("--baseline-claims", type=int, default=30)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
