#!/usr/bin/env python
"""Queue depth on PostgreSQL, through the API: server memory and claim latency at 1k vs 1M.

    python benchmarks/depth_memory.py                       # 1,000 and 1,000,000 queued
    python benchmarks/depth_memory.py --quick               # 1,000 and 100,000, 200 takes
    python benchmarks/depth_memory.py --depths 1000 1000000 --takes 500 --json out.json

For each depth, on a fresh database (``anypod migrate``): ``depth + takes + submits`` IN_QUEUE
jobs for endpoint ``noop`` are bulk-loaded with one ``INSERT ... SELECT generate_series`` (the
columns of ``migrations/postgres/0001_init.sql`` that ``SUBMIT`` in ``postgres_sql.py`` sets; TTL
one day, so the sweeper has nothing to expire), then ``VACUUM ANALYZE jobs`` and ``CHECKPOINT``
(so the load's dirty pages are not written out during the measurement). A worker token is
minted (``anypod worker-env --database``) and ``anypod server --endpoint noop`` (API only, no
worker) is started on it. Then, one request at a time over one keep-alive aiohttp session:

1. VmRSS / VmHWM of the API process (``/proc/<pid>/status``) 2 s after ``/health`` answers;
2. ``GET /v2/noop/health`` (counts the endpoint's jobs by status) and ``GET /health``, timed;
3. ``--takes`` claims through the worker protocol: ``GET /v2/noop/job-take/<w>`` (worker token
   in ``Authorization``) timed, each followed by ``POST /v2/noop/job-done/<w>/<id>`` (timed
   apart), as a worker would;
4. ``--submits`` ``POST /v2/noop/run`` + ``GET /v2/noop/status/<id>`` (timed);
5. VmRSS / VmHWM again: after serving that fixed workload.

Every phase stops after 55 s whatever the counts. Store-level claim latency (the CLAIM statement
through ``PostgresStore.claim``, its plan, 8 concurrent claimers, and the no-index baseline) is
``benchmarks/queue_depth.py``; this script measures what a worker and an operator see through
HTTP, and what the API process holds in memory. Subprocesses run in their own session and are
stopped (SIGTERM, then SIGKILL) on exit, error, SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from anypod.store import postgres_sql as q

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scaleout as so  # noqa: E402  (databases, token, timed stop)
import throughput as tp  # noqa: E402  (Proc, percentiles, health wait)

ENDPOINT = "noop"
PHASE_LIMIT = 55.0
TARGET_CLAIM_GROWTH = 2.0

LOAD = """
INSERT INTO jobs (id, endpoint, status, priority, input, execution_timeout_ms, ttl_ms,
                  low_priority, retention_ms, max_attempts, created_at, expires_at)
SELECT 'bulk-' || g, 'noop', 'IN_QUEUE', 0, convert_to('{"i": ' || g || '}', 'UTF8'),
       600000, 86400000, false, 1800000, 3, $2 + g / 1e6, $2 + 86400
FROM generate_series(1, $1) AS g
"""


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(val.split()[0])
    return out


async def timed_get(
    session: aiohttp.ClientSession, url: str, n: int, limit: float, **kw: Any
) -> tuple[dict[str, float], Any]:
    ms: list[float] = []
    last: Any = None
    began = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url, **kw) as resp:
            last = await resp.json(content_type=None)
            status = resp.status
        ms.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {url}: HTTP {status} {last}")
        if time.perf_counter() - began > limit:
            break
    return tp.summary(ms), last


async def takes(
    session: aiohttp.ClientSession, base: str, token: str, n: int
) -> tuple[dict[str, float], dict[str, float]]:
    auth = {"Authorization": token}
    wid = f"depth-bench-{os.getpid()}"
    take_ms: list[float] = []
    done_ms: list[float] = []
    began = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(f"{base}/job-take/{wid}?job_in_progress=0", headers=auth) as resp:
            if resp.status != 200:
                raise RuntimeError(f"job-take: HTTP {resp.status} {await resp.text()}")
            job = await resp.json(content_type=None)
        t1 = time.perf_counter()
        async with session.post(
            f"{base}/job-done/{wid}/{job['id']}",
            data=b'{"output": {"ok": true}}',
            headers={**auth, "Content-Type": "application/json"},
        ) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"job-done: HTTP {resp.status}")
        t2 = time.perf_counter()
        take_ms.append((t1 - t0) * 1000)
        done_ms.append((t2 - t1) * 1000)
        if t2 - began > PHASE_LIMIT:
            break
    return tp.summary(take_ms), tp.summary(done_ms)


async def submits(session: aiohttp.ClientSession, base: str, n: int) -> dict[str, float]:
    ms: list[float] = []
    began = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        async with session.post(f"{base}/run", json={"input": {"i": i}}) as resp:
            job = await resp.json(content_type=None)
        async with session.get(f"{base}/status/{job['id']}") as resp:
            await resp.read()
        ms.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - began > PHASE_LIMIT:
            break
    return tp.summary(ms)


async def one_depth(args: argparse.Namespace, tmp: Path, depth: int) -> dict[str, Any]:
    name = f"anypod_depth_{os.getpid()}_{depth}"
    dsn = await so.create_db(args.pg, name)
    out: dict[str, Any] = {"depth": depth}
    proc: tp.Proc | None = None
    try:
        so.run_cli("migrate", "--database", dsn)
        rows = depth + args.takes + args.submits
        conn = await asyncpg.connect(dsn)
        try:
            t0 = time.perf_counter()
            await conn.execute(LOAD, rows, time.time())
            loaded = time.perf_counter() - t0
            await conn.execute("VACUUM ANALYZE jobs")
            # flush the load's dirty pages now, not as a checkpoint during the measurement
            await conn.execute("CHECKPOINT")
            out["load_s"] = loaded
            out["vacuum_s"] = time.perf_counter() - t0 - loaded
            out["table_mb"] = await conn.fetchval("SELECT pg_total_relation_size('jobs')") / 2**20
        finally:
            await conn.close()
        port = tp.free_port()
        url = f"http://127.0.0.1:{port}"
        token = so.mint_token(dsn, url)
        argv = [so.PY, "-m", "anypod", "server", "--endpoint", ENDPOINT, "--database", dsn]
        argv += ["--port", str(port)]
        print(
            f"\n== {depth:,} queued (+{args.takes + args.submits} for the workload): loaded "
            f"{rows:,} rows in {out['load_s']:.1f} s, VACUUM ANALYZE + CHECKPOINT "
            f"{out['vacuum_s']:.1f} s, "
            f"jobs table {out['table_mb']:.0f} MB; load avg {os.getloadavg()[0]:.2f}\n"
            f"   anypod {' '.join(argv[3:])}",
            flush=True,
        )
        proc = tp.Proc(f"api depth {depth}", argv, tmp / f"api-{depth}.log")
        base = f"{url}/v2/{ENDPOINT}"
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=4, keepalive_timeout=120),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as session:
            t0 = time.perf_counter()
            await tp.wait_health(session, url, 0, proc)
            out["ready_s"] = time.perf_counter() - t0
            await asyncio.sleep(2.0)
            out["rss_start"] = proc_status(proc.pid)
            out["ep_health"], counts = await timed_get(
                session, f"{base}/health", args.health_samples, 20.0
            )
            out["ep_health_inqueue"] = counts["jobs"]["inQueue"]
            out["health"], _ = await timed_get(session, f"{url}/health", 100, 10.0)
            out["take"], out["done"] = await takes(session, base, token, args.takes)
            out["submit_status"] = await submits(session, base, args.submits)
            out["ep_health_after"], counts = await timed_get(
                session, f"{base}/health", min(args.health_samples, 5), 10.0
            )
            out["rss_end"] = proc_status(proc.pid)
            out["counts_after"] = counts["jobs"]
        out["counts_plan"] = await counts_plan(dsn)
        r0, r1 = out["rss_start"], out["rss_end"]
        print(
            f"   ready {out['ready_s']:.1f} s; RSS {r0['VmRSS'] / 1024:.1f} MiB after start, "
            f"{r1['VmRSS'] / 1024:.1f} MiB after the workload (peak {r1['VmHWM'] / 1024:.1f})\n"
            f"   GET /v2/noop/health: {fmt(out['ep_health'])} "
            f"(inQueue {out['ep_health_inqueue']:,})\n"
            f"   GET /health:         {fmt(out['health'])}\n"
            f"   job-take:            {fmt(out['take'])}\n"
            f"   job-done:            {fmt(out['done'])}\n"
            f"   run + status:        {fmt(out['submit_status'])}\n"
            f"   plan of the count behind /v2/noop/health (store's COUNTS statement):\n"
            + "\n".join("      " + line for line in out["counts_plan"]),
            flush=True,
        )
    finally:
        if proc is not None:
            out["shutdown"] = so.stop_timed(proc, args.server_grace)
            out["log_errors"] = so.grep_errors(proc.log_path)
        await so.drop_db(args.pg, name)
    return out


async def counts_plan(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {q.COUNTS}", ENDPOINT)
    finally:
        await conn.close()
    return [r[0] for r in rows]


def fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50']:.2f} ms  p99 {s['p99']:.2f} ms  mean {s['mean']:.2f}  (n={s['n']})"


def report(results: list[dict[str, Any]]) -> list[str]:
    print(
        "\n| queued | RSS after start MiB | RSS after workload MiB | peak MiB "
        "| job-take p50 ms | p99 ms | job-done p50 ms | /v2/noop/health p50 ms | p99 ms "
        "| /health p50 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['depth']:,} | {r['rss_start']['VmRSS'] / 1024:.1f} "
            f"| {r['rss_end']['VmRSS'] / 1024:.1f} | {r['rss_end']['VmHWM'] / 1024:.1f} "
            f"| {r['take']['p50']:.2f} | {r['take']['p99']:.2f} | {r['done']['p50']:.2f} "
            f"| {r['ep_health']['p50']:.1f} | {r['ep_health']['p99']:.1f} "
            f"| {r['health']['p50']:.2f} |"
        )
    lo, hi = results[0], results[-1]
    g50 = hi["take"]["p50"] / lo["take"]["p50"]
    g99 = hi["take"]["p99"] / lo["take"]["p99"]
    mem = hi["rss_end"]["VmRSS"] / lo["rss_end"]["VmRSS"]
    hgrow = hi["ep_health"]["p50"] / lo["ep_health"]["p50"]
    lines = [
        f"job-take at {hi['depth']:,} / at {lo['depth']:,}: p50 {g50:.2f}x, p99 {g99:.2f}x "
        f"(target <= {TARGET_CLAIM_GROWTH:g}x: "
        f"{'MET' if max(g50, g99) <= TARGET_CLAIM_GROWTH else 'MISSED'})",
        f"API RSS after the workload at {hi['depth']:,} / at {lo['depth']:,}: {mem:.2f}x "
        f"({hi['rss_end']['VmRSS'] / 1024 - lo['rss_end']['VmRSS'] / 1024:+.1f} MiB; target: "
        f"no growth with depth, within 10%: {'MET' if mem <= 1.10 else 'MISSED'})",
        f"GET /v2/noop/health at {hi['depth']:,} / at {lo['depth']:,}: p50 {hgrow:.0f}x "
        f"({hi['ep_health']['p50']:.1f} ms vs {lo['ep_health']['p50']:.2f} ms)",
    ]
    print()
    for line in lines:
        print(line)
    for r in results:
        print(f"depth {r['depth']:,}: server {r.get('shutdown')}")
        for e in r.get("log_errors", []):
            print(f"   log: {e}")
    return lines


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="anypod-depth-"))
    conn = await asyncpg.connect(args.pg)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores; PostgreSQL {pg_version}; "
        f"source {tp.source_fingerprint()}; logs in {tmp}; takes {args.takes}, "
        f"submits {args.submits}, endpoint-health samples {args.health_samples}"
    )
    results = [await one_depth(args, tmp, d) for d in args.depths]
    lines = report(results)
    if args.json:
        doc = {
            "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
            "postgres": pg_version,
            "args": vars(args),
            "source": tp.source_fingerprint(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "results": results,
            "verdicts": lines,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        print(f"wrote {args.json}")
    if not args.keep_logs:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--depths", type=int, nargs="+", default=[1_000, 1_000_000])
    p.add_argument("--takes", type=int, default=500, help="job-take + job-done pairs per depth")
    p.add_argument("--submits", type=int, default=200, help="run + status pairs per depth")
    p.add_argument("--health-samples", type=int, default=30, help="GET /v2/noop/health samples")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--server-grace", type=float, default=8.0, help="seconds before SIGKILL")
    p.add_argument("--quick", action="store_true", help="depths 1,000 and 100,000; 200 takes")
    p.add_argument("--json")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.takes, args.submits, args.health_samples = 200, 100, 10
        if args.depths == p.get_default("depths"):
            args.depths = [1_000, 100_000]
    return args


if __name__ == "__main__":
    options = cli()
    signal.signal(signal.SIGTERM, so._sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = asyncio.run(main(options))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    finally:
        tp.Proc.stop_all()
    sys.exit(code)
