"""SQLite lookups by id are read on the event loop from a read-only connection: they see
every committed write, whatever the file is called, and fall back to the writer's thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from anypod import jobs
from anypod.store.sqlite import SQLiteStore
from tests.clock import T0


def new(job_id: str) -> jobs.NewJob:
    return jobs.NewJob(
        id=job_id, endpoint="ep", input=orjson.dumps({}), policy=jobs.Policy(),
        retention_ms=60_000, max_attempts=3, created_at=T0,
    )  # fmt: skip


async def test_lookups_see_committed_writes_in_an_oddly_named_file(tmp_path: Path) -> None:
    async with SQLiteStore(str(tmp_path / "a?b#c%20 d.db")) as store:
        assert store._reader is not None
        await store.submit(new("j"))
        assert (await store.get("j")) == new("j").queued()
        await store.claim("ep", 1, jobs.claim("w", T0, 30))
        got = await store.get("j")
        assert got is not None and got.status is jobs.JobStatus.IN_PROGRESS


async def test_a_failing_reader_falls_back_to_the_writer(tmp_path: Path) -> None:
    async with SQLiteStore(str(tmp_path / "s.db")) as store:
        await store.submit(new("j"))
        assert store._reader is not None
        store._reader.close()  # every read on it now raises sqlite3.ProgrammingError
        assert (await store.get("j")) == new("j").queued()
        store._reader = sqlite3.connect(":memory:")  # no jobs table: an OperationalError
        assert (await store.get("j")) == new("j").queued()


async def test_a_large_job_is_read_by_the_writer_thread(tmp_path: Path) -> None:
    async with SQLiteStore(str(tmp_path / "big.db")) as store:
        big = jobs.NewJob(
            id="big", endpoint="ep", input=orjson.dumps({"a": "x" * 400_000}),
            policy=jobs.Policy(), retention_ms=60_000, max_attempts=3, created_at=T0,
        )  # fmt: skip
        await store.submit(big)
        assert store._reader is not None
        args = ("big", 256 * 1024)
        assert store._reader.execute(store.q.GET_SMALL, args).fetchone() is None
        assert (await store.get("big")) == big.queued()
