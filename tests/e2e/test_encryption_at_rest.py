"""Encryption at rest, end to end: a real ``anypod serve`` with ``ANYPOD_ENCRYPTION_KEY`` and a
real worker run a job whose input, progress, stream chunk and output carry a marker; the API
answers with the marker, and the database (the SQLite file and its WAL, or PostgreSQL's rows)
holds it nowhere, mid-job or after. (On PostgreSQL the key comes from --encryption-key-file.)
A bad key refuses to start, naming the setting."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Served, handler_path, wait_status
from tests.postgres import MakeDatabase, blocking

KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'anypod.db'}"
    make: MakeDatabase = request.getfixturevalue("pg_database")
    return make()


def stored(database: str) -> list[bytes]:
    """Every byte the database holds for anypod: the SQLite files (main, WAL, shared memory),
    or every value of every row of its job, stream chunk and worker tables in PostgreSQL."""
    if database.startswith("sqlite"):
        path = Path(database.removeprefix("sqlite:///"))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return [f.read_bytes() for f in files if f.exists()]
    return blocking(_pg_values(database))


async def _pg_values(url: str) -> list[bytes]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = [
            r
            for t in ("jobs", "stream_chunks", "workers")
            for r in await conn.fetch(f"SELECT * FROM {t}")
        ]
    finally:
        await conn.close()
    return [v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row.values()]


def chunks_stored(database: str) -> int:
    if database.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM stream_chunks").fetchone()[0])
    return blocking(_pg_count(database))


async def _pg_count(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM stream_chunks"))
    finally:
        await conn.close()


def assert_nowhere(database: str, mark: str) -> None:
    """No marker at all (this test's, or one left by an earlier step) in what is stored."""
    found = stored(database)
    hits = sum(blob.count(b"MARK-") for blob in found)
    assert found and hits == 0, f"{hits} marker(s) stored in plain in {database}"
    assert not any(mark.encode() in blob for blob in found)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def key_given(database: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Flags and environment: the key in the environment for SQLite; in a key file (an old
    key after it) otherwise."""
    if database.startswith("sqlite"):
        return [], {"ANYPOD_ENCRYPTION_KEY": KEY}
    path = tmp_path / "keys"
    path.write_text(f"{KEY}\n{base64.b64encode(os.urandom(32)).decode()}\n")
    return ["--encryption-key-file", str(path)], {}


def test_job_data_is_encrypted_at_rest(
    serve: Callable[..., Served], database: str, tmp_path: Path
) -> None:
    flags, env = key_given(database, tmp_path)
    server = serve("marked", extra=["--database", database, *flags], env=env)
    mark, release = f"MARK-{uuid.uuid4().hex}", tmp_path / "release"
    run = {"input": {"mark": mark, "release": str(release)}}
    job_id = httpx.post(f"{server.url}/v2/marked/run", json=run, timeout=5).json()["id"]

    def progressed() -> bool:
        body = httpx.get(f"{server.url}/v2/marked/status/{job_id}", timeout=5).json()
        return bool(body.get("output") == {"progress": mark} and chunks_stored(database))

    wait_until(progressed, "the progress update and the stream chunk never arrived")
    assert_nowhere(database, mark)  # mid-job: input, progress, chunk

    release.touch()
    done = wait_status(server.url, "marked", job_id, {"COMPLETED", "FAILED"})
    assert done["status"] == "COMPLETED", done
    assert done["output"] == [{"chunk": mark}, {"answer": mark}]
    assert_nowhere(database, mark)  # after: input, output, chunks

    streamed = httpx.get(f"{server.url}/v2/marked/stream/{job_id}", timeout=5).json()
    assert {"output": {"chunk": mark}} in streamed["stream"]


@pytest.mark.parametrize(
    ("env", "option", "message"),
    [
        ({"ANYPOD_ENCRYPTION_KEY": "c2hvcnQ="}, "", "ANYPOD_ENCRYPTION_KEY: the key is 5 bytes"),
        ({}, "short\n", "ANYPOD_ENCRYPTION_KEY_FILE .* line 1: not base64"),
    ],
)
def test_a_bad_key_refuses_to_start(
    env: dict[str, str], option: str, message: str, tmp_path: Path
) -> None:
    args = [sys.executable, "-m", "anypod", "serve", handler_path("echo")]
    args += ["--database", f"sqlite:///{tmp_path / 'a.db'}", "--port", "0"]
    if option:
        (tmp_path / "keys").write_text(option)
        args += ["--encryption-key-file", str(tmp_path / "keys")]
    done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, timeout=30)
    assert done.returncode == 2, done
    assert re.search(message, done.stderr.decode()), done.stderr
    assert not (tmp_path / "a.db").exists()
