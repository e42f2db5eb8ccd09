"""Queue depth on PostgreSQL, through the API: server memory and claim latency at 1k vs 1M.

    python -m benchmarks.depth_memory                     # 1,000 and 1,000,000 queued
    python -m benchmarks.depth_memory --quick             # 1,000 and 100,000, 200 takes
    python -m benchmarks.depth_memory --depths 1000 1000000 --takes 500 --json out.json

Per depth, on a fresh database (``anypod migrate``): ``depth + takes + submits`` IN_QUEUE jobs
for endpoint ``noop`` in one ``INSERT ... SELECT generate_series`` (this benchmark's fixture,
written against ``src/anypod/store/migrations/postgres/``; TTL one day, so the sweeper has
nothing to expire), then ``VACUUM ANALYZE jobs`` and ``CHECKPOINT`` (the load's dirty pages are
written now, not during the measurement). ``anypod server --endpoint noop`` (API only) runs on
it with a worker token from ``anypod worker-env``. Then, one request at a time over one
keep-alive session: VmRSS/VmHWM of the API 2 s after ``/health`` answers; ``GET
/v2/noop/health`` (counts the endpoint's jobs) and ``GET /health``; ``--takes`` ``job-take``
(worker token) each followed by its ``job-done``, timed apart; ``--submits`` ``POST /run`` +
``GET /status``; VmRSS/VmHWM again. Every phase stops after 55 s. The plan of the store's
COUNTS statement (``anypod.store.sql``) behind ``/v2/noop/health`` is printed. The store-level
claim (its plan, concurrent claimers, no-index baseline) is ``benchmarks.queue_depth``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from anypod.store import sql
from benchmarks.harness import load, pg, procs, report, stats, sut

TARGET_CLAIM_GROWTH = 2.0
BULK = """
INSERT INTO jobs (id, endpoint, status, priority, input, execution_timeout_ms, ttl_ms,
                  low_priority, retention_ms, max_attempts, created_at, expires_at)
SELECT 'bulk-' || g, 'noop', 'IN_QUEUE', 0, convert_to('{"i": ' || g || '}', 'UTF8'),
       600000, 86400000, false, 1800000, 3, $2 + g / 1e6, $2 + 86400
FROM generate_series(1, $1) AS g
"""


async def fill(dsn: str, rows: int) -> dict[str, float]:
    conn = await pg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.execute(BULK, rows, time.time())
        t1 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE jobs")
        await conn.execute("CHECKPOINT")  # write the load's dirty pages now
        size = await conn.fetchval("SELECT pg_total_relation_size('jobs')")
        return {"load_s": t1 - t0, "vacuum_s": time.perf_counter() - t1, "table_mb": size / 2**20}
    finally:
        await conn.close()


async def workload(
    s: aiohttp.ClientSession, url: str, token: str, args: argparse.Namespace
) -> dict[str, Any]:
    base, auth, wid = f"{url}/v2/{sut.ENDPOINT}", {"Authorization": token}, f"depth-{os.getpid()}"
    out: dict[str, Any] = {}
    seen: dict[str, Any] = {}

    async def ep_health(i: int) -> None:
        seen.update(await load.get_ok(s, f"{base}/health"))

    async def take_then_done(i: int) -> None:  # even steps take a job, odd ones report it
        if i % 2 == 0:
            seen["job"] = await load.get_ok(s, f"{base}/job-take/{wid}?job_in_progress=0", auth)
            return
        done = f"{base}/job-done/{wid}/{seen['job']['id']}"
        async with s.post(
            done, data=b'{"output": {"ok": true}}', headers={**auth, **load.JSON_HEADERS}
        ) as r:
            if r.status != 200:
                raise RuntimeError(f"job-done: HTTP {r.status}")

    async def run_then_status(i: int) -> None:
        async with s.post(f"{base}/run", data=load.job_body(i), headers=load.JSON_HEADERS) as r:
            job = await r.json(content_type=None)
        await load.get_ok(s, f"{base}/status/{job['id']}")

    out["ep_health"] = stats.summary(
        await load.sequential(args.health_samples, ep_health, limit=20)
    )
    out["ep_health_inqueue"] = seen["jobs"]["inQueue"]
    out["health"] = stats.summary(
        await load.sequential(100, lambda i: load.get_ok(s, f"{url}/health"), limit=10)
    )
    pairs = await load.sequential(2 * args.takes, take_then_done)
    out["take"], out["done"] = stats.summary(pairs[0::2]), stats.summary(pairs[1::2])
    out["submit_status"] = stats.summary(await load.sequential(args.submits, run_then_status))
    await load.sequential(min(args.health_samples, 5), ep_health, limit=10)
    out["counts_after"] = seen["jobs"]
    return out


async def one_depth(reg: procs.Registry, args: argparse.Namespace, depth: int) -> dict[str, Any]:
    cli = sut.Anypod(args.src)
    async with pg.fresh_database(args.pg, f"anypod_depth_{os.getpid()}_{depth}") as dsn:
        cli.run("migrate", "--database", dsn)
        rows = depth + args.takes + args.submits
        out: dict[str, Any] = {"depth": depth, **await fill(dsn, rows)}
        port = procs.free_port()
        url = f"http://127.0.0.1:{port}"
        token = cli.worker_token(dsn, server=url)
        argv = ["server", "--endpoint", sut.ENDPOINT, "--database", dsn, "--port", str(port)]
        print(
            f"\n== {depth:,} queued (+{args.takes + args.submits} for the workload): {rows:,} rows "
            f"in {out['load_s']:.1f} s, VACUUM ANALYZE + CHECKPOINT {out['vacuum_s']:.1f} s, jobs "
            f"table {out['table_mb']:.0f} MB; {report.load_avg()}\n   anypod {' '.join(argv)}",
            flush=True,
        )
        api = cli.start(reg, f"api depth {depth}", *argv)
        t0 = time.perf_counter()
        await procs.wait_health(api, f"{url}/health", lambda h: True)
        out["ready_s"] = time.perf_counter() - t0
        await asyncio.sleep(2.0)
        out["rss_start"] = procs.memory_kib(api.pid)
        async with load.session(4) as session:
            out |= await workload(session, url, token, args)
        out["rss_end"] = procs.memory_kib(api.pid)
        conn = await pg.connect(dsn)
        try:
            out["counts_plan"] = await pg.explain(
                conn, sql.for_dialect("postgres").COUNTS, sut.ENDPOINT
            )
        finally:
            await conn.close()
        out["shutdown"] = reg.stop(api, args.server_grace)
    r0, r1 = out["rss_start"], out["rss_end"]
    print(
        f"   ready {out['ready_s']:.1f} s; RSS {r0['VmRSS'] / 1024:.1f} MiB after start, "
        f"{r1['VmRSS'] / 1024:.1f} MiB after the workload (peak {r1['VmHWM'] / 1024:.1f})\n"
        f"   GET /v2/noop/health: {out['ep_health'].long()} "
        f"(inQueue {out['ep_health_inqueue']:,})\n"
        f"   GET /health:         {out['health'].long()}\n"
        f"   job-take:            {out['take'].long()}\n"
        f"   job-done:            {out['done'].long()}\n"
        f"   run + status:        {out['submit_status'].long()}\n"
        "   plan of the count behind /v2/noop/health (the store's COUNTS):\n"
        + "\n".join("      " + line for line in out["counts_plan"]),
        flush=True,
    )
    return out


def verdicts(results: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{r['depth']:,}",
            *(f"{r[k]['VmRSS'] / 1024:.1f}" for k in ("rss_start", "rss_end")),
            f"{r['rss_end']['VmHWM'] / 1024:.1f}",
            f"{r['take'].p50:.2f}",
            f"{r['take'].p99:.2f}",
            f"{r['done'].p50:.2f}",
            f"{r['ep_health'].p50:.1f}",
            f"{r['ep_health'].p99:.1f}",
            f"{r['health'].p50:.2f}",
        ]
        for r in results
    ]
    head = [
        "queued",
        "RSS after start MiB",
        "after workload",
        "peak",
        "job-take p50 ms",
        "p99",
        "job-done p50",
        "/v2/noop/health p50",
        "p99",
        "/health p50",
    ]
    print("\n" + report.table(head, rows) + "\n")
    lo, hi = results[0], results[-1]
    g50, g99 = (hi["take"].p50 / lo["take"].p50, hi["take"].p99 / lo["take"].p99)
    mem = hi["rss_end"]["VmRSS"] / lo["rss_end"]["VmRSS"]
    mib = (hi["rss_end"]["VmRSS"] - lo["rss_end"]["VmRSS"]) / 1024
    at = f"at {hi['depth']:,} / at {lo['depth']:,}"
    return [
        f"job-take {at}: p50 {g50:.2f}x, p99 {g99:.2f}x (target <= {TARGET_CLAIM_GROWTH:g}x: "
        f"{report.verdict(max(g50, g99) <= TARGET_CLAIM_GROWTH)})",
        f"API RSS after the workload {at}: {mem:.2f}x ({mib:+.1f} MiB; target: no growth with "
        f"depth, within 10%: {report.verdict(mem <= 1.10)})",
        f"GET /v2/noop/health {at}: p50 {hi['ep_health'].p50 / lo['ep_health'].p50:.0f}x "
        f"({hi['ep_health'].p50:.1f} ms vs {lo['ep_health'].p50:.2f} ms)",
    ]


async def main(reg: procs.Registry, args: argparse.Namespace) -> int:
    source = sut.Anypod(args.src).identity()
    info = await pg.settings(args.pg, "server_version")
    print(report.header(source, postgres=info["server_version"]))
    print(
        f"takes {args.takes}, submits {args.submits}, endpoint-health samples {args.health_samples}"
    )
    results = [await one_depth(reg, args, d) for d in args.depths]
    lines = verdicts(results)
    print("\n".join(lines) + "\n\n" + reg.shutdown_report())
    if args.json:
        report.write_json(args.json, args, source, postgres=info, results=results, verdicts=lines)
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--depths", type=int, nargs="+", default=[1_000, 1_000_000])
    p.add_argument("--takes", type=int, default=500, help="job-take + job-done pairs per depth")
    p.add_argument("--submits", type=int, default=200, help="run + status pairs per depth")
    p.add_argument("--health-samples", type=int, default=30, help="GET /v2/noop/health samples")
    p.add_argument("--pg", default=pg.ADMIN_URL, help="admin URL; each depth gets a fresh database")
    p.add_argument("--server-grace", type=float, default=8.0, help="seconds before SIGKILL")
    p.add_argument("--quick", action="store_true", help="depths 1,000 and 100,000; 200 takes")
    p.add_argument("--json", type=Path)
    p.add_argument("--src", type=Path, help=sut.SRC_HELP)
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.takes, args.submits, args.health_samples = 200, 100, 10
        if args.depths == p.get_default("depths"):
            args.depths = [1_000, 100_000]
    return args


if __name__ == "__main__":
    options = parse()
    sys.exit(procs.run_main(lambda reg: main(reg, options), options.keep_logs))
