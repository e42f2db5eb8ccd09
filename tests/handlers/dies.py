"""Dies: SIGKILL on ``{"crash": true}``, ``os._exit(N)`` on ``{"exit": N}``; else its pid."""

from __future__ import annotations

import os
import signal
from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    if job["input"].get("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    if "exit" in job["input"]:
        os._exit(int(job["input"]["exit"]))
    return {"pid": os.getpid()}
