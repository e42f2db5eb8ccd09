"""Store backends for the contract suite. PostgreSQL joins when its backend exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from anypod import store as stores

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[stores.Store]:
    url = f"sqlite:///{tmp_path / 'contract.db'}"
    async with stores.from_url(url, migrate=True) as opened:
        yield opened
