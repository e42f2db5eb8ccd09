"""The worker's "handler ready" line says whether it batches (issue 8, item 16a): the empty
``Buckets`` it starts with is falsy, which once made a batching worker log no batches."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import pytest

from anypod.worker.memory_source import MemoryJobSource
from anypod.worker.options import WorkerOptions
from anypod.worker.parent import Worker

BATCH = """
import anypod

@anypod.batch(max_size=3, max_wait_ms=50)
def handler(jobs):
    return [{} for j in jobs]
"""

PLAIN = """
def handler(job):
    return {}
"""


async def ready_line(tmp_path: Path, caplog: pytest.LogCaptureFixture, source_code: str) -> str:
    path = tmp_path / "handler.py"
    path.write_text(textwrap.dedent(source_code))
    opts = WorkerOptions(
        server="http://127.0.0.1:9",
        endpoint="ep",
        token="t",
        handler=str(path),
        worker_id="w1",
        gpu="cpu",
        ping_interval=0.05,
        stop_grace=0.5,
    )
    worker = Worker(opts, MemoryJobSource(hold=0.05))
    caplog.set_level(logging.INFO, logger="anypod.worker")
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(300):
            lines = [r.getMessage() for r in caplog.records if "ready" in r.getMessage()]
            if lines:
                return lines[0]
            await asyncio.sleep(0.05)
        raise AssertionError("the worker never logged that its handler is ready")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 15)


async def test_a_batch_handler_is_logged_as_batching(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert "batches of up to 3" in await ready_line(tmp_path, caplog, BATCH)


async def test_a_plain_handler_is_logged_without_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert "batches" not in await ready_line(tmp_path, caplog, PLAIN)
