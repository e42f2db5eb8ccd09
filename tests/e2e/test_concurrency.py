"""Worker concurrency: N jobs at once, and never more taken than the worker can start."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import wait_status


def test_worker_takes_only_what_it_can_start(serve: Any) -> None:
    s = serve("behaviours", extra=["--concurrency", "2"])
    with httpx.Client(base_url=s.url, timeout=10) as c:
        ids = [
            c.post("/v2/behaviours/run", json={"input": {"do": "sleep", "seconds": 0.6}}).json()[
                "id"
            ]
            for _ in range(6)
        ]
        peak, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = c.get("/v2/behaviours/health").json()["jobs"]
            peak = max(peak, jobs["inProgress"])
            if jobs["completed"] == 6:
                break
            time.sleep(0.05)
    assert peak == 2
    starts = sorted(wait_status(s.url, "behaviours", i, {"COMPLETED"})["delayTime"] for i in ids)
    assert starts[1] < 500 < starts[2]  # two ran at once; the third waited for a free slot
