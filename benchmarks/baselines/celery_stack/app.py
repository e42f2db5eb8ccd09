"""API side: FastAPI + asyncpg. Each job is a row; the Celery task id is the row id.

Run with:  uvicorn app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
from anyio import CapacityLimiter, to_thread
from celery import Celery
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from settings import BROKER_POOL_LIMIT, BROKER_URL, CREATE_TABLE_SQL, PG_DSN, TABLE, TASK_NAME

# The API only publishes; it never imports the worker's code, it names the task.
celery = Celery("celery_stack_api", broker=BROKER_URL)
celery.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    broker_pool_limit=BROKER_POOL_LIMIT,
    broker_connection_retry_on_startup=True,
)

_pool: asyncpg.Pool | None = None
# Celery's publish path (kombu + redis-py) is blocking I/O, so it must not run on
# the event loop. We run it in worker threads; Celery's producer pool hands each
# thread its own broker connection. The limiter is sized to the producer pool so
# threads never queue inside Celery waiting for a free connection.
_publish_limiter = CapacityLimiter(BROKER_POOL_LIMIT)

_CREATE_LOCK_KEY = 0x63656C6A  # advisory lock: N uvicorn processes start at once


class JobRequest(BaseModel):
    input: dict[str, Any]


async def _init_conn(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _ensure_table(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _CREATE_LOCK_KEY)
        await conn.execute(CREATE_TABLE_SQL)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global _pool
    _pool = await asyncpg.create_pool(PG_DSN, min_size=2, max_size=10, init=_init_conn)
    await _ensure_table(_pool)
    try:
        yield
    finally:
        await _pool.close()
        _pool = None


app = FastAPI(lifespan=lifespan)


def _db() -> asyncpg.Pool:
    if _pool is None:
        raise RuntimeError("database pool not initialised")
    return _pool


async def _enqueue(job_id: str) -> None:
    send = partial(celery.send_task, TASK_NAME, args=[job_id], task_id=job_id)
    await to_thread.run_sync(send, limiter=_publish_limiter)


def _row_to_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(out["id"])
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/jobs")
async def submit(req: JobRequest) -> dict[str, str]:
    job_uuid = uuid.uuid4()
    job_id = str(job_uuid)
    pool = _db()
    # Row first, then enqueue: the worker must always find the row it is given.
    await pool.execute(f"INSERT INTO {TABLE} (id, input) VALUES ($1, $2)", job_uuid, req.input)
    try:
        await _enqueue(job_id)
    except Exception as exc:
        await pool.execute(
            f"UPDATE {TABLE} SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
            job_uuid,
            f"enqueue failed: {exc!r}",
        )
        raise HTTPException(503, "broker unavailable") from exc
    return {"id": job_id, "status": "queued"}


@app.get("/jobs/{job_id}")
async def status(job_id: uuid.UUID) -> dict[str, Any]:
    row = await _db().fetchrow(f"SELECT * FROM {TABLE} WHERE id = $1", job_id)
    if row is None:
        raise HTTPException(404, "job not found")
    return _row_to_json(row)
