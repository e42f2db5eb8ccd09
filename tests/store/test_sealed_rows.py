"""Encryption at rest as the database sees it: the raw rows of SQLite and PostgreSQL hold no job
value in plain (and do without a key: the control), values from before encryption still read,
keys rotate, and a ciphertext moved to another job does not open."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from anypod import jobs
from anypod import store as stores
from anypod.store import sealing
from tests.postgres import MakeDatabase
from tests.store.test_contract import T0, W, done, new_job, take

A, B = os.urandom(32), os.urandom(32)
VALUES = (
    "SELECT input, output, error, s3_config FROM jobs"
    " UNION ALL SELECT output, NULL, NULL, NULL FROM stream_chunks"
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rows.db'}"
    make: MakeDatabase = request.getfixturevalue("pg_database")
    return make()


async def raw(url: str, statement: str) -> list[tuple[Any, ...]]:
    """The rows as the database holds them, read (or written) past the store."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(stores.sqlite_path(url))) as conn:
            rows = conn.execute(statement).fetchall()
            conn.commit()
            return rows
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(statement)]
    finally:
        await conn.close()


async def stored_values(url: str) -> list[bytes]:
    return [bytes(v) for row in await raw(url, VALUES) for v in row if v is not None]


def marked(mark: str, job_id: str) -> jobs.NewJob:
    return dataclasses.replace(
        new_job(job_id),
        input=orjson.dumps({"prompt": mark}),
        s3_config=orjson.dumps({"secretAccessKey": mark}),
    )


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "plain-control"])
async def test_no_job_value_is_stored_in_plain(url: str, sealed: bool) -> None:
    mark = f"MARK-{uuid.uuid4().hex}"
    keys = sealing.Keyring.of(A) if sealed else sealing.PLAIN
    async with stores.from_url(url, migrate=True, keys=keys) as store:
        for job_id in ("a", "b", "c"):
            await store.submit(marked(mark, job_id))
        await store.claim("ep", 3, take("w", T0, T0 + 30))
        assert await store.record_progress("a", W, orjson.dumps({"progress": mark}))
        assert await store.append_stream("a", W, orjson.dumps({"chunk": mark}))
        await store.end("b", done(error=f"failed on {mark}", at=T0 + 1))
        await store.end("c", done({"answer": mark}, at=T0 + 1))
        values = await stored_values(url)
        assert len(values) == 3 + 3 + 3 + 1  # inputs, s3_configs, progress/error/output, chunk
        assert all(mark.encode() not in v for v in values) is sealed
        assert all(sealing.is_sealed(v) for v in values) is sealed
        got = {j: await store.get(j) for j in "abc"}
        assert all(mark in (g.input + (g.s3_config or b"")).decode() for g in got.values() if g)
        assert mark in (got["a"].output or b"").decode()  # type: ignore[union-attr]
        assert mark in (got["b"].error or b"").decode()  # type: ignore[union-attr]
        assert mark in (got["c"].output or b"").decode()  # type: ignore[union-attr]
        assert await store.drain_stream("a") == [orjson.dumps({"chunk": mark})]


async def test_values_from_before_encryption_still_read(url: str) -> None:
    async with stores.from_url(url, migrate=True) as plain:
        await plain.submit(new_job("old"))
    async with stores.from_url(url, keys=sealing.Keyring.of(A)) as store:
        await store.submit(new_job("new"))
        rows = {r[0]: bytes(r[1]) for r in await raw(url, "SELECT id, input FROM jobs")}
        assert not sealing.is_sealed(rows["old"]) and sealing.is_sealed(rows["new"])
        claimed = await store.claim("ep", 2, take("w", T0, T0 + 30))
        assert [orjson.loads(j.input) for j in claimed] == [{"n": "old"}, {"n": "new"}]


async def test_keys_rotate_and_a_missing_key_is_named(url: str) -> None:
    async with stores.from_url(url, migrate=True, keys=sealing.Keyring.of(A)) as first:
        await first.submit(new_job("under-a"))
    async with stores.from_url(url, keys=sealing.Keyring.of(B, A)) as rotated:
        assert orjson.loads((await rotated.get("under-a")).input) == {"n": "under-a"}  # type: ignore[union-attr]
        await rotated.submit(new_job("under-b"))
    async with stores.from_url(url, keys=sealing.Keyring.of(B)) as only_b:
        assert orjson.loads((await only_b.get("under-b")).input) == {"n": "under-b"}  # type: ignore[union-attr]
        with pytest.raises(sealing.SealError, match=sealing.Key(A).hex_id):
            await only_b.get("under-a")


async def test_a_ciphertext_copied_into_another_job_does_not_open(url: str) -> None:
    async with stores.from_url(url, migrate=True, keys=sealing.Keyring.of(A)) as store:
        await store.submit(new_job("victim"))
        await store.submit(new_job("attacker"))
        await raw(
            url,
            "UPDATE jobs SET input = (SELECT input FROM jobs WHERE id = 'victim')"
            " WHERE id = 'attacker'",
        )
        with pytest.raises(sealing.SealError, match=r"attacker.*failed authentication"):
            await store.get("attacker")
        assert orjson.loads((await store.get("victim")).input) == {"n": "victim"}  # type: ignore[union-attr]
