"""A generator handler with progress; RunPod's return_aggregate_stream on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import runpod

import anypod


def handler(job: dict[str, Any]) -> Iterator[Any]:
    n = int(job["input"].get("n", 3))
    delay = float(job["input"].get("delay", 0.05))
    for i in range(n):
        anypod.progress(job, {"step": i + 1, "of": n})
        time.sleep(delay)
        if job["input"].get("fail_at") == i:
            raise RuntimeError(f"failed at {i}")
        yield {"chunk": i}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
