"""Worker concurrency: N jobs at once, and never more taken than the worker can start."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import wait_status


def test_worker_takes_only_what_it_can_start(serve: Any) -> None:
    s = serve("sleeps", extra=["--concurrency", "2"])
    with httpx.Client(base_url=s.url, timeout=10) as c:
        ids = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 0.6}}).json()["id"]
            for _ in range(6)
        ]
    done = [wait_status(s.url, "sleeps", i, {"COMPLETED"}) for i in ids]
    spans = [(d["output"]["start"], d["output"]["end"]) for d in done]
    running_at = [sum(1 for a, b in spans if a <= t < b) for t, _ in spans]
    assert max(running_at) == 2  # two at once, never three
    taken = sorted(d["delayTime"] for d in done)
    assert taken[1] < 500 < taken[2]  # the third was taken only when a slot was free


def test_long_jobs_spread_across_workers_and_short_ones_prefetch(serve: Any) -> None:
    s = serve("sleeps", workers=2)
    with httpx.Client(base_url=s.url, timeout=10) as c:
        quick = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"] for _ in range(20)
        ]
        for job_id in quick:
            wait_status(s.url, "sleeps", job_id, {"COMPLETED"})
        ids = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 1}}).json()["id"] for _ in range(4)
        ]
    done = [wait_status(s.url, "sleeps", i, {"COMPLETED"}) for i in ids]
    by_worker: dict[str, int] = {}
    for d in done:
        by_worker[d["workerId"]] = by_worker.get(d["workerId"], 0) + 1
    assert sorted(by_worker.values()) == [2, 2], by_worker  # no hoarding
    assert max(d["output"]["end"] for d in done) - min(d["output"]["start"] for d in done) < 3
