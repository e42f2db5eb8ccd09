"""Uses the runpod SDK's own progress_update, unchanged, and RunPod's refresh/concurrency config."""

from __future__ import annotations

import time
from typing import Any

import runpod


def handler(job: dict[str, Any]) -> dict[str, Any]:
    runpod.serverless.progress_update(job, "halfway")
    time.sleep(float(job["input"].get("seconds", 1.0)))
    return {"done": True}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
