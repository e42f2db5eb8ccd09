"""PostgreSQL for benchmarks: fresh databases, server settings, plans, and the backend
processes that serve one database (for CPU accounting)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks.harness import procs

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def connect(url: str, **kwargs: Any) -> Any:
    """An asyncpg connection (asyncpg ships no types)."""
    return await asyncpg.connect(url, **kwargs)


async def create_pool(url: str, **kwargs: Any) -> Any:
    """An asyncpg pool."""
    return await asyncpg.create_pool(url, **kwargs)


async def _admin(admin_url: str, sql: str) -> None:
    conn = await connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A new, empty database ``name`` (dropped first if left over); dropped on exit."""
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        with contextlib.suppress(Exception):
            await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def settings(url: str, *names: str) -> dict[str, str]:
    """``SHOW`` each setting, e.g. ``server_version``, ``synchronous_commit``."""
    conn = await connect(url)
    try:
        return {n: str(await conn.fetchval(f"SHOW {n}")) for n in names}
    finally:
        await conn.close()


async def explain(conn: Any, sql: str, *params: object) -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)`` of ``sql``, in a transaction rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *params)
    finally:
        await tx.rollback()
    return [str(r[0]) for r in rows]


def backends(dbname: str) -> list[int]:
    """Server processes connected to ``dbname`` (their title: ``postgres: ... user db host``)."""
    return procs.matching(lambda cmd: cmd.startswith("postgres:") and f" {dbname} " in cmd)
