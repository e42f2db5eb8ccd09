#!/usr/bin/env python
"""asyncpg vs psycopg 3 (async, pooled) on the PostgreSQL store's hot statements.

    python benchmarks/pg_driver.py                         # 4 rounds x 3000 jobs, 8 tasks
    python benchmarks/pg_driver.py --jobs 500 --rounds 1   # smoke run
    python benchmarks/pg_driver.py --url postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/pg_driver.py --columns               # bytea vs text vs jsonb payloads

Both drivers run the very statements of ``anypod.store.postgres_sql`` (SUBMIT: insert a job;
CLAIM: ``UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED)``; END: the ``finish``
compare-and-set), in the same process, same event loop (uvloop when installed, as
``anypod server`` uses), same fresh database, same pool size, one statement per pooled
acquire (autocommit, so no BEGIN/COMMIT round trips for either). Variants:

* ``asyncpg``: pool with ``reset=`` a no-op, as :class:`PostgresStore` configures it;
* ``asyncpg-default``: asyncpg's default pool, which runs a reset query on every release;
* ``psycopg``: ``psycopg_pool.AsyncConnectionPool`` with ``autocommit=True`` (psycopg
  prepares a statement after 5 executions by default; asyncpg always does).

Rounds alternate the driver order; each phase reports ops/s (``--tasks`` concurrent tasks)
the p50/p99 latency of single operations, and this process's CPU time per operation (the
driver's own cost: on a small box the client competes with PostgreSQL for cores); then each
phase runs again one operation at a time ("seq p50": per-call latency without queueing). The
summary is the median over rounds, with each driver's ratio to asyncpg.
``--synchronous-commit off`` takes the WAL flush out of every write so the driver shows.

``--columns`` instead compares the column type for job payloads (asyncpg, one at a time): the
store gets encoded JSON bytes and must hand the same JSON back. For each payload (a 1 KB object
whose keys are not sorted, a 1 MB embedding-like array, a 10 MB object) it writes and reads it
back through ``bytea``, ``text`` and ``jsonb`` columns, and reports ms per write+read, whether
the bytes came back identical, and the table size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from anypod import jobs
from anypod.store import migrations
from anypod.store import postgres_sql as q

Run = Callable[[str, tuple[object, ...]], Awaitable[Any]]
PHASES = ("submit", "claim", "finish")


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _no_reset(conn: Any) -> None:
    pass


@contextlib.asynccontextmanager
async def asyncpg_runner(url: str, size: int, *, reset: bool, sync: str) -> AsyncIterator[Run]:
    extra: dict[str, Any] = {} if reset else {"reset": _no_reset}
    settings = {"synchronous_commit": sync}
    pool = await asyncpg.create_pool(
        url, min_size=size, max_size=size, server_settings=settings, **extra
    )

    async def run(sql: str, args: tuple[object, ...]) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetch(sql, *args)

    try:
        yield run
    finally:
        await pool.close()


def psycopg_sql(sql: str) -> str:
    """``$n`` placeholders → psycopg's ``%(pn)s`` (the statements reuse some parameters)."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql)


@contextlib.asynccontextmanager
async def psycopg_runner(url: str, size: int, *, sync: str) -> AsyncIterator[Run]:
    from psycopg_pool import AsyncConnectionPool

    options = {"autocommit": True, "options": f"-c synchronous_commit={sync}"}
    pool = AsyncConnectionPool(url, min_size=size, max_size=size, kwargs=options, open=False)
    await pool.open(wait=True)
    translated: dict[str, str] = {}

    async def run(sql: str, args: tuple[object, ...]) -> Any:
        text = translated.get(sql) or translated.setdefault(sql, psycopg_sql(sql))
        params = {f"p{i + 1}": v for i, v in enumerate(args)}
        async with pool.connection() as conn:
            cur = await conn.execute(text, params)  # type: ignore[arg-type]
            return await cur.fetchall() if cur.description else None

    try:
        yield run
    finally:
        await pool.close()


def submit_args(i: int, tag: str) -> tuple[object, ...]:
    new = jobs.NewJob(
        id=f"{tag}-{i}",
        endpoint=tag,
        input=orjson.dumps({"prompt": "a cat in a hat", "steps": 30, "seed": i}),
        policy=jobs.Policy(),
        retention_ms=1_800_000,
        max_attempts=3,
        created_at=time.time(),
    )
    return q.submit_args(new)


def op_args(phase: str, i: int, tag: str) -> tuple[str, tuple[object, ...]]:
    now = time.time()
    if phase == "submit":
        return q.SUBMIT, submit_args(i, tag)
    if phase == "claim":
        return q.CLAIM, (f"w{i % 8}", now, now + 30, tag, 1)
    output = orjson.dumps({"image": "s3://bucket/x.png"})
    return q.END, ("COMPLETED", output, None, now, False, f"{tag}-{i}")


async def phase(run: Run, name: str, n: int, tasks: int, tag: str) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            sql, args = op_args(name, i, tag)
            began = time.perf_counter()
            await run(sql, args)
            latencies.append(time.perf_counter() - began)

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "ops_s": n / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "cpu_us": cpu / n * 1e6,  # this (client) process's CPU per operation
    }


async def sequential_p50(run: Run, name: str, n: int, tag: str) -> float:
    """p50 of one operation at a time (no queueing in the pool): pure per-call latency."""
    latencies = []
    for i in range(n):
        sql, args = op_args(name, i, tag)
        began = time.perf_counter()
        await run(sql, args)
        latencies.append(time.perf_counter() - began)
    return statistics.median(latencies) * 1000


def runner(
    driver: str, url: str, size: int, sync: str
) -> contextlib.AbstractAsyncContextManager[Run]:
    if driver == "psycopg":
        return psycopg_runner(url, size, sync=sync)
    return asyncpg_runner(url, size, reset=driver == "asyncpg-default", sync=sync)


async def one_round(url: str, driver: str, args: argparse.Namespace, r: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with runner(driver, url, args.tasks, args.synchronous_commit) as run:
        for name in PHASES:
            tag = f"{driver}-{r}"
            result[name] = await phase(run, name, args.jobs, args.tasks, tag)
        seq_tag = f"{driver}-{r}-seq"
        for name in PHASES:
            result[name]["seq_p50_ms"] = await sequential_p50(run, name, args.seq, seq_tag)
    return result


async def setup_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        for migration in migrations.load("postgres"):
            await conn.execute(migration.sql)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    base = {p: statistics.median(r[p]["ops_s"] for r in results["asyncpg"]) for p in PHASES}
    print(
        f"\n{'driver':<16}{'phase':<8}{'ops/s':>9}{'x asyncpg':>11}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'seq p50 ms':>12}{'CPU us/op':>11}"
    )
    for driver, rounds in results.items():
        for p in PHASES:
            ops = statistics.median(r[p]["ops_s"] for r in rounds)
            p50 = statistics.median(r[p]["p50_ms"] for r in rounds)
            p99 = statistics.median(r[p]["p99_ms"] for r in rounds)
            seq = statistics.median(r[p]["seq_p50_ms"] for r in rounds)
            cpu = statistics.median(r[p]["cpu_us"] for r in rounds)
            print(
                f"{driver:<16}{p:<8}{ops:>9.0f}{ops / base[p]:>10.2f}x"
                f"{p50:>9.2f}{p99:>9.2f}{seq:>12.3f}{cpu:>11.0f}"
            )


async def main(args: argparse.Namespace) -> None:
    name = f"anypod_bench_driver_{os.getpid()}"
    url = await setup_database(args.url, name)
    drivers = ["asyncpg", "asyncpg-default", "psycopg"]
    results: dict[str, list[dict[str, Any]]] = {d: [] for d in drivers}
    try:
        for r in range(args.rounds):
            order = drivers if r % 2 == 0 else drivers[::-1]
            for driver in order:
                results[driver].append(await one_round(url, driver, args, r))
                done = results[driver][-1]
                print(
                    f"round {r} {driver:<16}"
                    + "  ".join(f"{p} {done[p]['ops_s']:.0f}/s" for p in PHASES),
                    flush=True,
                )
    finally:
        await drop_database(args.url, name)
    report(results)


def payloads() -> dict[str, bytes]:
    small = {"zeta": 1, "alpha": [1.5, 2.25], "mid": {"y": "text " * 150, "b": None}}
    embedding = [i / 7 for i in range(50_000)]
    big = {"image": "iVBORw0KGgo" * 900_000, "meta": {"w": 1024, "h": 1024}}
    return {
        "1KB obj": orjson.dumps(small),
        "1MB array": orjson.dumps(embedding),
        "10MB obj": orjson.dumps(big),
    }


async def column_case(conn: Any, kind: str, payload: bytes, n: int) -> tuple[float, bool]:
    value: object = payload if kind == "bytea" else payload.decode()
    await conn.execute("TRUNCATE t_payload")
    began = time.perf_counter()
    for _ in range(n):
        row_id = await conn.fetchval(
            f"INSERT INTO t_payload (v_{kind}) VALUES ($1) RETURNING id", value
        )
        back = await conn.fetchval(f"SELECT v_{kind} FROM t_payload WHERE id = $1", row_id)
    per_op = (time.perf_counter() - began) / n * 1000
    same = (back if kind == "bytea" else back.encode()) == payload
    return per_op, same


async def columns(args: argparse.Namespace) -> None:
    name = f"anypod_bench_columns_{os.getpid()}"
    url = await setup_database(args.url, name)
    settings = {"synchronous_commit": args.synchronous_commit}
    conn = await asyncpg.connect(url, server_settings=settings)
    kinds = ("bytea", "text", "jsonb")
    try:
        await conn.execute(
            "CREATE TABLE t_payload (id serial PRIMARY KEY,"
            " v_bytea bytea, v_text text, v_jsonb jsonb)"
        )
        print(f"{'payload':<11}{'column':<7}{'ms/op':>9}{'x bytea':>9}{'identical':>11}")
        for label, payload in payloads().items():
            n = 100 if len(payload) < 100_000 else 10
            await column_case(conn, "bytea", payload, 3)  # warm up
            runs: dict[str, list[float]] = {k: [] for k in kinds}
            same: dict[str, bool] = {}
            for r in range(args.rounds):  # rotate the order, keep the median
                for kind in kinds[r % 3 :] + kinds[: r % 3]:
                    per_op, same[kind] = await column_case(conn, kind, payload, n)
                    runs[kind].append(per_op)
            base = statistics.median(runs["bytea"])
            for kind in kinds:
                ms = statistics.median(runs[kind])
                print(f"{label:<11}{kind:<7}{ms:>9.3f}{ms / base:>8.2f}x{same[kind]!s:>11}")
    finally:
        await conn.close()
        await drop_database(args.url, name)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--jobs", type=int, default=3000, help="operations per phase")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent tasks = pool size")
    parser.add_argument("--seq", type=int, default=300, help="sequential samples per phase")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--columns", action="store_true", help="compare payload column types")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="off: no WAL flush per commit, so the numbers show the drivers, not the disk",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    entry = columns(arguments) if arguments.columns else main(arguments)
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(entry)
    else:
        asyncio.run(entry)
