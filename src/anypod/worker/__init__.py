"""anypod's worker: a parent loop speaking the RunPod worker protocol, user code in a child."""

from __future__ import annotations

from anypod.worker.runtime import Worker, WorkerOptions

__all__ = ["Worker", "WorkerOptions"]
