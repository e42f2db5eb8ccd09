"""Appends its job id to the file ``input.path`` (after ``input.seconds``): counts executions."""

from __future__ import annotations

import time
from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(job["input"].get("seconds", 0)))
    with open(job["input"]["path"], "a") as out:
        out.write(job["id"] + "\n")
    return {"recorded": True}
