"""asyncpg vs psycopg 3 (async, pooled) on the PostgreSQL store's hot statements.

    python -m benchmarks.pg_driver                          # 4 rounds x 3000 ops, 8 tasks
    python -m benchmarks.pg_driver --jobs 500 --rounds 1    # smoke run
    python -m benchmarks.pg_driver --synchronous-commit off # the drivers rather than the disk
    python -m benchmarks.pg_driver --columns                # bytea vs text vs jsonb payloads

Both drivers run the store's own statements (``anypod.store.sql.for_dialect("postgres")``:
SUBMIT, CLAIM with ``SKIP LOCKED``, END = ``finish``) in this process, on one event loop (uvloop
unless ``--loop asyncio``), on a fresh database migrated by the store, with a pool of ``--tasks``
connections and one statement per acquire (autocommit: no BEGIN/COMMIT round trips). Variants:
``asyncpg`` (``reset=`` a no-op, as the store configures its pool), ``asyncpg-default`` (the
default reset query on every release), ``psycopg`` (``psycopg_pool.AsyncConnectionPool``,
autocommit; ``pip install 'psycopg[binary]' psycopg-pool``). Rounds alternate the driver order.
Per phase: ops/s with ``--tasks`` concurrent tasks, p50/p99 of one operation, this process's CPU
per operation, then p50 one operation at a time; medians over rounds, ratios to asyncpg.

``--columns`` compares column types for job payloads instead (asyncpg, one at a time): a 1 KB
object with unsorted keys, a 1 MB array and a 10 MB object written and read back through
``bytea``, ``text`` and ``jsonb``: ms per write + read, and whether the bytes came back equal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import os
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from anypod import jobs
from anypod.store import from_url, sealing, sql
from benchmarks.harness import load, pg, procs, report, stats, sut

Run = Callable[[str, tuple[object, ...]], Awaitable[Any]]
PHASES = ("submit", "claim", "finish")
DRIVERS = ("asyncpg", "asyncpg-default", "psycopg")


async def _keep_session(conn: object) -> None:
    """The store's pool setting: no reset query on release."""


@contextlib.asynccontextmanager
async def runner(driver: str, url: str, size: int, sync: str) -> AsyncIterator[Run]:
    if driver == "psycopg":
        pools = importlib.import_module("psycopg_pool")
        options = {"autocommit": True, "options": f"-c synchronous_commit={sync}"}
        pool = pools.AsyncConnectionPool(
            url, min_size=size, max_size=size, kwargs=options, open=False
        )
        await pool.open(wait=True)

        async def run(statement: str, args: tuple[object, ...]) -> Any:
            text = re.sub(r"\$(\d+)", r"%(p\1)s", statement)  # statements reuse parameters
            async with pool.connection() as conn:
                cur = await conn.execute(text, {f"p{i + 1}": v for i, v in enumerate(args)})
                return await cur.fetchall() if cur.description else None

    else:
        extra = {"reset": _keep_session} if driver == "asyncpg" else {}
        settings = {"synchronous_commit": sync}
        pool = await pg.create_pool(
            url, min_size=size, max_size=size, server_settings=settings, **extra
        )

        async def run(statement: str, args: tuple[object, ...]) -> Any:
            async with pool.acquire() as conn:
                return await conn.fetch(statement, *args)

    try:
        yield run
    finally:
        await pool.close()


def operation(phase: str, i: int, tag: str) -> tuple[str, tuple[object, ...]]:
    q, now = sql.for_dialect("postgres"), time.time()
    if phase == "submit":
        body = orjson.dumps({"prompt": "a cat in a hat", "steps": 30, "seed": i})
        new = jobs.NewJob(
            id=f"{tag}-{i}",
            endpoint=tag,
            input=body,
            policy=jobs.Policy(),
            retention_ms=1_800_000,
            max_attempts=3,
            created_at=now,
        )
        return q.SUBMIT, sql.insert_values(new, sealing.PLAIN)
    if phase == "claim":  # $1 worker, $2 now, $3 lease_until, $4 endpoint, $5 limit
        return q.CLAIM, (f"w{i % 8}", now, now + 30, tag, 1)
    output = b'{"image": "s3://bucket/x.png"}'  # $1 status, $2 output, $3 error, $4 now, $5, $6 id
    return q.END, ("COMPLETED", output, None, now, False, f"{tag}-{i}")


async def phase(run: Run, name: str, args: argparse.Namespace, tag: str) -> dict[str, float]:
    ms: list[float] = []

    async def one(client: int, i: int) -> None:
        statement, params = operation(name, i, tag)
        t0 = time.perf_counter()
        await run(statement, params)
        ms.append((time.perf_counter() - t0) * 1000)

    cpu0 = time.process_time()
    wall = await load.closed_loop(args.tasks, one, args.jobs, seconds=600)
    s = stats.summary(ms)
    cpu_us = (time.process_time() - cpu0) / args.jobs * 1e6  # this process: the driver's cost
    return {"ops_s": args.jobs / wall, "p50_ms": s.p50, "p99_ms": s.p99, "cpu_us": cpu_us}


async def one_round(url: str, driver: str, args: argparse.Namespace, r: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with runner(driver, url, args.tasks, args.synchronous_commit) as run:
        for name in PHASES:
            out[name] = await phase(run, name, args, f"{driver}-{r}")
        for name in PHASES:  # one at a time: per-call latency without queueing in the pool

            async def step(i: int, name: str = name) -> object:
                return await run(*operation(name, i, f"{driver}-{r}-seq"))

            out[name]["seq_p50_ms"] = statistics.median(await load.sequential(args.seq, step))
    return out


async def drivers(url: str, args: argparse.Namespace) -> None:
    names = [d for d in DRIVERS if d != "psycopg" or importlib.util.find_spec("psycopg_pool")]
    if len(names) < len(DRIVERS):
        print("psycopg_pool is not installed: pip install 'psycopg[binary]' psycopg-pool")
    results: dict[str, list[dict[str, Any]]] = {d: [] for d in names}
    for r in range(args.rounds):
        for driver in names if r % 2 == 0 else names[::-1]:
            results[driver].append(await one_round(url, driver, args, r))
            print(
                f"round {r} {driver:<16}"
                + "  ".join(f"{p} {results[driver][-1][p]['ops_s']:.0f}/s" for p in PHASES)
            )

    def med(driver: str, p: str, key: str) -> float:
        return float(statistics.median(r[p][key] for r in results[driver]))

    fields = (("ops_s", ".0f"), ("p50_ms", ".2f"), ("p99_ms", ".2f"), ("seq_p50_ms", ".3f"),
              ("cpu_us", ".0f"))  # fmt: skip
    rows = []
    for d, p in ((d, p) for d in names for p in PHASES):
        cells = [f"{med(d, p, k):{fmt}}" for k, fmt in fields]
        ratio = med(d, p, "ops_s") / med("asyncpg", p, "ops_s")
        rows.append([d, p, cells[0], f"{ratio:.2f}x", *cells[1:]])
    head = ["driver", "phase", "ops/s", "vs asyncpg", "p50 ms", "p99 ms", "seq p50 ms", "CPU µs/op"]
    print("\n" + report.table(head, rows, right=2))


def payloads() -> dict[str, bytes]:
    small = {"zeta": 1, "alpha": [1.5, 2.25], "mid": {"y": "text " * 150, "b": None}}
    big = {"image": "iVBORw0KGgo" * 900_000, "meta": {"w": 1024, "h": 1024}}
    arrays = [i / 7 for i in range(50_000)]
    return {
        "1KB obj": orjson.dumps(small),
        "1MB array": orjson.dumps(arrays),
        "10MB obj": orjson.dumps(big),
    }


async def write_read(conn: Any, kind: str, data: bytes) -> bool:
    """Insert ``data`` into column ``v_<kind>``, read it back: the same bytes?"""
    value: object = data if kind == "bytea" else data.decode()
    insert = f"INSERT INTO t_payload (v_{kind}) VALUES ($1) RETURNING id"
    back = await conn.fetchval(
        f"SELECT v_{kind} FROM t_payload WHERE id = $1", await conn.fetchval(insert, value)
    )
    return bool((back if kind == "bytea" else back.encode()) == data)


async def column_ms(conn: Any, kind: str, data: bytes, n: int) -> float:
    """Mean ms of ``n`` writes + reads of ``data`` through one column type."""

    async def step(i: int) -> bool:
        return await write_read(conn, kind, data)

    await conn.execute("TRUNCATE t_payload")
    return statistics.fmean(await load.sequential(n, step))


async def columns(url: str, args: argparse.Namespace) -> None:
    conn = await pg.connect(url, server_settings={"synchronous_commit": args.synchronous_commit})
    kinds, rows = ("bytea", "text", "jsonb"), []
    await conn.execute(
        "CREATE TABLE t_payload (id serial PRIMARY KEY, v_bytea bytea, v_text text, v_jsonb jsonb)"
    )
    try:
        for label, data in payloads().items():
            n = 100 if len(data) < 100_000 else 10
            ms: dict[str, list[float]] = {k: [] for k in kinds}
            same = {k: await write_read(conn, k, data) for k in kinds}  # also a warm-up
            for r in range(args.rounds):  # rotate the order, keep the median
                for kind in kinds[r % 3 :] + kinds[: r % 3]:
                    ms[kind].append(await column_ms(conn, kind, data, n))
            base = statistics.median(ms["bytea"])
            for k in kinds:
                med = statistics.median(ms[k])
                rows.append([label, k, f"{med:.3f}", f"{med / base:.2f}x", str(same[k])])
    finally:
        await conn.close()
    print(report.table(["payload", "column", "ms/op", "x bytea", "identical"], rows, right=2))


async def main(args: argparse.Namespace) -> None:
    print(report.header(sut.Anypod().identity()))
    async with pg.fresh_database(args.url, f"anypod_bench_driver_{os.getpid()}") as url:
        async with from_url(url, migrate=True):  # the store's own schema
            pass
        await (columns(url, args) if args.columns else drivers(url, args))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=pg.ADMIN_URL, help="admin URL; a fresh database is made")
    p.add_argument("--jobs", type=int, default=3000, help="operations per phase")
    p.add_argument("--tasks", type=int, default=8, help="concurrent tasks = pool size")
    p.add_argument("--seq", type=int, default=300, help="one-at-a-time samples per phase")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--columns", action="store_true", help="compare payload column types")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    return p.parse_args()


if __name__ == "__main__":
    options = parse()
    factory = procs.loop_factory() if options.loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as loop:
        loop.run(main(options))
