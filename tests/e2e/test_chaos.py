"""Slow tier (``make test-all``): handler processes killed with SIGKILL again and again while
jobs pour in. Every job must end, none may run twice, and the workers must keep taking jobs.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_durability import wait_all

JOBS = 1500
MAX_KILLS = 60


def handler_children(server_pid: int) -> list[int]:
    """The handler processes: children of the server's worker processes."""
    found = []
    for worker in _children(server_pid):
        found += _children(worker)
    return found


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
def test_handler_crashes_under_load_lose_nothing_and_run_nothing_twice(
    serve: Any, tmp_path: Path
) -> None:
    s = serve("record", workers=2, extra=["--concurrency", "2"])
    assert s.proc is not None
    record = tmp_path / "record.txt"
    record.touch()
    body = {"input": {"path": str(record), "seconds": 0.02}}
    with httpx.Client(base_url=s.url, timeout=10) as c:
        ids = [c.post("/v2/record/run", json=body).json()["id"] for _ in range(JOBS)]
        rng, kills = random.Random(7), 0
        while kills < MAX_KILLS and c.get("/v2/record/health").json()["jobs"]["inQueue"]:
            time.sleep(0.4)
            children = handler_children(s.proc.pid)
            if children:
                os.kill(rng.choice(children), signal.SIGKILL)
                kills += 1
    assert kills >= 10, kills
    final = wait_all(s.url, "record", ids, timeout=240)
    assert set(final.values()) <= {"COMPLETED", "FAILED"}, Counter(final.values())
    runs = Counter(record.read_text().split())
    assert max(runs.values()) == 1  # nothing ran twice
    for job_id, status in final.items():
        if status == "COMPLETED":
            assert runs[job_id] == 1, job_id
    with httpx.Client(base_url=s.url, timeout=30) as c:
        for job_id in [i for i, st in final.items() if st == "FAILED"][:20]:
            error = c.get(f"/v2/record/status/{job_id}").json()["error"]
            assert "killed by SIGKILL" in error, error
        after = c.post("/v2/record/runsync", json=body).json()
    assert after["status"] == "COMPLETED"  # the workers recovered
    assert Counter(final.values())["COMPLETED"] > JOBS // 2
