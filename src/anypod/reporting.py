"""``anypod.progress(job, value)``: report progress from inside a handler.

Inside an anypod worker it travels to the server through the worker parent; on RunPod it uses
``runpod.serverless.progress_update``; anywhere else it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anypod import settings, types

Sink = Callable[[str, Any], None]
_sink: Sink | None = None


def install(sink: Sink | None) -> None:
    """Called by the worker child to route progress to the parent."""
    global _sink
    _sink = sink


def progress(job: types.JSONDict, value: Any) -> None:
    """Publish ``value`` as the job's ``output`` while it is IN_PROGRESS."""
    if _sink is not None:
        _sink(job["id"], value)
    elif settings.runpod_progress_configured():
        from runpod.serverless import progress_update

        progress_update(job, value)
