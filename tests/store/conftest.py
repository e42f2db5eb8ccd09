"""Store backends for the contract suite: memory, SQLite, and PostgreSQL when a server is
reachable (a fresh database per test, from ``tests/postgres.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anypod import store as stores
from tests.postgres import MakeDatabase

BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    make: MakeDatabase = request.getfixturevalue("pg_database")
    return make()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[stores.Store]:
    async with stores.from_url(store_url, migrate=True) as opened:
        yield opened
