"""One handler, many behaviours chosen by ``input.do``: sleep, raise, error dict, crash, exit."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def handler(job: dict[str, Any]) -> Any:
    inp = job["input"]
    do = inp.get("do", "echo")
    if do == "sleep":
        start = time.time()
        time.sleep(float(inp.get("seconds", 1)))
        return {"slept": inp.get("seconds", 1), "start": start, "end": time.time()}
    if do == "raise":
        raise ValueError(inp.get("message", "boom"))
    if do == "error":
        return {"error": inp.get("message", "bad thing")}
    if do == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "exit":
        os._exit(3)
    if do == "none":
        return None
    if do == "s3":
        return {"s3Config": job.get("s3Config"), "webhook": job.get("webhook")}
    if do == "refresh":
        return {"pid": os.getpid(), "refresh_worker": True}
    if do == "record":  # append our job id to a file shared by every worker: counts executions
        time.sleep(float(inp.get("seconds", 0)))
        with open(inp["path"], "a") as out:
            out.write(job["id"] + "\n")
        return {"recorded": True}
    if do == "pid":
        return {"pid": os.getpid()}
    return {"echo": inp}
