"""The store contract again, with encryption at rest on (store/sealing.py), on SQLite and
PostgreSQL: sealing every job value changes nothing a store promises."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anypod import store as stores
from anypod.store import sealing
from tests.postgres import MakeDatabase
from tests.store.test_contract import *  # noqa: F403  (every contract test, collected here too)

KEYS = sealing.Keyring.of(os.urandom(32), os.urandom(32))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sealed.db'}"
    make: MakeDatabase = request.getfixturevalue("pg_database")
    return make()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[stores.Store]:
    async with stores.from_url(store_url, migrate=True, keys=KEYS) as opened:
        yield opened
