"""Encryption at rest: reports progress and streams a chunk carrying the ``mark`` of its input,
waits for the file named by ``release`` (so a test can read the database mid-job), then yields
the mark once more; RunPod's return_aggregate_stream makes the chunks its output."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import runpod

import anypod


def handler(job: dict[str, Any]) -> Iterator[dict[str, str]]:
    mark = job["input"]["mark"]
    anypod.progress(job, {"progress": mark})
    yield {"chunk": mark}
    release, deadline = Path(job["input"]["release"]), time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield {"answer": mark}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
