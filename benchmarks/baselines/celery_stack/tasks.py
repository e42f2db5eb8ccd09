"""Celery worker side: one task that runs a job and records the result in its row.

Run with:  celery -A tasks worker --pool prefork --concurrency 2
"""

from __future__ import annotations

import traceback
from typing import Any

import psycopg
from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from psycopg.types.json import Jsonb

from settings import BROKER_POOL_LIMIT, BROKER_URL, PG_DSN, TABLE, TASK_NAME

app = Celery("celery_stack", broker=BROKER_URL)
app.conf.update(
    # The row in PostgreSQL *is* the result; a result backend would be a second
    # source of truth and an extra Redis round trip per task.
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    # At-least-once: ack only after the task body finished, and re-queue if the
    # worker child dies mid-task (OOM, segfault in a model) instead of losing it.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Transcription jobs are long and uneven. With acks_late each prefetched
    # message is reserved by one worker process, so a multiplier > 1 lets one
    # busy worker hoard jobs that an idle one could run. 1 is the setting Celery's
    # docs recommend for long tasks; it costs some throughput on tiny tasks.
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_pool_limit=BROKER_POOL_LIMIT,
    # Redis re-delivers unacked messages after this; must exceed the longest job.
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
)

_conn: psycopg.Connection[Any] | None = None


@worker_process_init.connect
def _open_db(**_: Any) -> None:
    """One connection per prefork child (connections must not cross a fork)."""
    global _conn
    _conn = psycopg.connect(PG_DSN, autocommit=True)


@worker_process_shutdown.connect
def _close_db(**_: Any) -> None:
    if _conn is not None:
        _conn.close()


def _db() -> psycopg.Connection[Any]:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(PG_DSN, autocommit=True)
    return _conn


def handler(job_input: dict[str, Any]) -> dict[str, Any]:
    """The job itself: a no-op stand-in for transcription."""
    return {"ok": True, "echo": job_input}


def _mark_running(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any] | None:
    # 'running' is accepted too: with acks_late a redelivered job may find its
    # row already marked by the attempt that died.
    row = conn.execute(
        f"UPDATE {TABLE} SET status = 'running', started_at = now() "
        "WHERE id = %s AND status IN ('queued', 'running') RETURNING input",
        (job_id,),
    ).fetchone()
    return None if row is None else dict(row[0])


def _mark_completed(conn: psycopg.Connection[Any], job_id: str, output: dict[str, Any]) -> None:
    conn.execute(
        f"UPDATE {TABLE} SET status = 'completed', output = %s, finished_at = now() WHERE id = %s",
        (Jsonb(output), job_id),
    )


def _mark_failed(conn: psycopg.Connection[Any], job_id: str, error: str) -> None:
    conn.execute(
        f"UPDATE {TABLE} SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
        (error, job_id),
    )


@app.task(name=TASK_NAME)
def run_job(job_id: str) -> None:
    conn = _db()
    job_input = _mark_running(conn, job_id)
    if job_input is None:  # unknown id, or already finished (duplicate delivery)
        return
    try:
        output = handler(job_input)
    except Exception:
        _mark_failed(conn, job_id, traceback.format_exc())
        return
    _mark_completed(conn, job_id, output)
