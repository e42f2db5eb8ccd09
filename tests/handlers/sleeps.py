"""Sleeps ``input.seconds`` (default 1) and says when it started and ended."""

from __future__ import annotations

import time
from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    seconds = job["input"].get("seconds", 1)
    start = time.time()
    time.sleep(float(seconds))
    return {"slept": seconds, "start": start, "end": time.time()}
