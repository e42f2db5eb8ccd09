"""PostgreSQL databases for end-to-end tests: one fresh, migrated database per test."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c"]


def _psql(sql: str) -> None:
    subprocess.run([*ADMIN, sql], check=True, capture_output=True, timeout=30)


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        _psql("SELECT 1")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    subprocess.run(
        [sys.executable, "-m", "anypod", "migrate", "--database", url],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield url
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
