"""A RunPod handler that does nothing: measures the job server, not the work."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> dict[str, bool]:
    return {"ok": True}


if __name__ == "__main__":
    import runpod

    runpod.serverless.start({"handler": handler})
