"""An async handler that can run many jobs at once (concurrency_modifier)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anypod.serverless


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    start = time.time()
    await asyncio.sleep(float(job["input"].get("seconds", 0.5)))
    return {"start": start, "end": time.time()}


if __name__ == "__main__":
    anypod.serverless.start({"handler": handler, "concurrency_modifier": lambda current: 4})
