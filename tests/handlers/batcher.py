"""A batch handler: one call per batch; reports what it saw."""

from __future__ import annotations

import os
import time
from typing import Any

import anypod


@anypod.batch(max_size=4, max_wait_ms=300, bucket=["size"])
def handler(jobs: list[dict[str, Any]]) -> list[Any]:
    time.sleep(float(jobs[0]["input"].get("seconds", 0.05)))
    ids = [job["id"] for job in jobs]
    results: list[Any] = []
    for job in jobs:
        anypod.progress(job, "in batch")
        if job["input"].get("fail"):
            results.append({"error": f"bad item {job['input'].get('n')}"})
        else:
            results.append(
                {
                    "n": job["input"].get("n"),
                    "size": job["input"].get("size"),
                    "batch": ids,
                    "pid": os.getpid(),
                    "at": time.time(),
                }
            )
    return results
