"""Batch handlers through real workers: buckets, max wait, per-job results, overrides."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import wait_status


def submit(url: str, inputs: list[dict[str, Any]]) -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as c:
        return [c.post("/v2/batcher/run", json={"input": i}).json()["id"] for i in inputs]


def outputs(url: str, ids: list[str]) -> list[dict[str, Any]]:
    return [wait_status(url, "batcher", i, {"COMPLETED", "FAILED"}) for i in ids]


def test_batches_fill_per_bucket_and_never_mix(serve: Any) -> None:
    s = serve("batcher")
    ids = submit(
        s.url, [{"n": i, "size": 512 if i % 2 else 1024, "seconds": 0.3} for i in range(8)]
    )
    done = outputs(s.url, ids)
    assert all(d["status"] == "COMPLETED" for d in done)
    by_id = {d["id"]: d["output"] for d in done}
    for out in by_id.values():
        sizes = {by_id[other]["size"] for other in out["batch"]}
        assert sizes == {out["size"]}  # a batch never mixes buckets
    assert max(len(out["batch"]) for out in by_id.values()) >= 2


def test_partial_batch_runs_after_max_wait_and_errors_stay_per_item(serve: Any) -> None:
    s = serve("batcher")
    started = time.monotonic()
    ids = submit(s.url, [{"n": 1, "size": 1}, {"n": 2, "size": 1, "fail": True}])
    first, second = outputs(s.url, ids)
    assert time.monotonic() - started < 5
    assert first["status"] == "COMPLETED" and first["output"]["batch"] == ids
    assert second["status"] == "FAILED" and second["error"] == "bad item 2"
    assert first["workerId"] == second["workerId"]


def test_batch_size_override_from_environment(serve: Any) -> None:
    s = serve("batcher", env={"BATCH_SIZE": "2"})
    ids = submit(s.url, [{"n": i, "size": 7, "seconds": 0.2} for i in range(6)])
    done = outputs(s.url, ids)
    assert max(len(d["output"]["batch"]) for d in done) <= 2


def test_cancel_a_job_waiting_in_a_batch(serve: Any) -> None:
    s = serve("batcher")
    blocker = submit(s.url, [{"n": 0, "size": "a", "seconds": 1.5}])
    wait_status(s.url, "batcher", blocker[0], {"IN_PROGRESS"})
    ids = submit(s.url, [{"n": i, "size": "b"} for i in range(2)])
    httpx.post(f"{s.url}/v2/batcher/cancel/{ids[0]}")
    done = outputs(s.url, [*blocker, ids[1]])
    assert [d["status"] for d in done] == ["COMPLETED", "COMPLETED"]
    assert wait_status(s.url, "batcher", ids[0], {"CANCELLED"})["status"] == "CANCELLED"
