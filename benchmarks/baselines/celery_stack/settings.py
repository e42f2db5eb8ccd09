"""Shared configuration for the Celery baseline (env-overridable)."""

from __future__ import annotations

import os

#: PostgreSQL DSN. Database `test`, trust auth on the benchmark machine.
PG_DSN = os.environ.get("CELERY_STACK_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

#: Redis broker. A dedicated db number so FLUSHDB at benchmark start cannot
#: touch anything else living on the same Redis server.
BROKER_URL = os.environ.get("CELERY_STACK_BROKER_URL", "redis://127.0.0.1:6379/5")

#: The one table this baseline owns; dropped and recreated by `run.Stack`.
TABLE = "celery_jobs"

#: Celery task name, used by the API via `send_task` so the API process
#: never imports the worker code.
TASK_NAME = "celery_stack.run_job"

#: Max broker connections per API process (Celery's producer pool) — also the
#: number of threads the API will use concurrently to publish.
BROKER_POOL_LIMIT = int(os.environ.get("CELERY_STACK_BROKER_POOL_LIMIT", "10"))

CREATE_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id          uuid PRIMARY KEY,
    status      text NOT NULL DEFAULT 'queued',
    input       jsonb NOT NULL,
    output      jsonb,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
)
"""

DROP_TABLE_SQL = f"DROP TABLE IF EXISTS {TABLE}"
