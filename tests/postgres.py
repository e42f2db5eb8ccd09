"""PostgreSQL databases for tests, one fresh database per use, for the store and e2e tests alike.

Each database is cloned from a template migrated once per session and per xdist worker
(``CREATE DATABASE t_... TEMPLATE anypod_tpl_...``), which is fast and fully isolated, and is
dropped after its test. The server is ``ANYPOD_TEST_POSTGRES_URL`` (default: the development one
on 127.0.0.1:5432); when it cannot be reached, the tests that need it skip.

Registered as a plugin by ``tests/conftest.py``: ask for ``pg_url`` (one migrated database) or
``pg_database`` (a factory, for several databases or an empty one).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from anypod import store as stores

T = TypeVar("T")
ADMIN_URL = os.environ.get("ANYPOD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MakeDatabase = Callable[..., str]


def database_url(name: str) -> str:
    """The admin URL pointed at database ``name``."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run an admin coroutine on its own thread and loop, away from any test's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    async with stores.from_url(url, migrate=True):
        pass


@pytest.fixture(scope="session")
def pg_template(worker_id: str) -> Iterator[str]:
    """A migrated template database for this session and xdist worker."""
    pytest.importorskip("asyncpg")
    name = f"anypod_tpl_{worker_id}_{os.getpid()}"
    try:
        blocking(admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}")
    try:
        blocking(_migrate(database_url(name)))
        yield name
    finally:
        blocking(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[MakeDatabase]:
    """Factory: ``pg_database()`` → URL of a fresh migrated database (``template=False``: an
    empty one). All are dropped after the test."""
    made: list[str] = []

    def make(*, template: bool = True) -> str:
        name = f"t_{pg_template.removeprefix('anypod_tpl_')}_{uuid.uuid4().hex[:10]}"
        clone = f' TEMPLATE "{pg_template}"' if template else ""
        blocking(admin(f'CREATE DATABASE "{name}"{clone}'))
        made.append(name)
        return database_url(name)

    yield make
    for name in made:
        blocking(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_database: MakeDatabase) -> str:
    """URL of one fresh migrated database, dropped after the test."""
    return pg_database()
