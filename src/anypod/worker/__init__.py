"""anypod's worker: a parent loop (``parent.py``) that takes jobs from a job source
(``source.py``: HTTP, or a fake in memory) and keeps one record per job (``records.py``), with
the user's code in a child process (``child.py``) it talks to in typed events (``events.py``).

This package imports nothing heavy: the child process imports ``anypod.worker.child`` and must
not pull in an HTTP stack. ``from anypod.worker import Worker`` loads the parent on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anypod.worker.options import WorkerOptions

if TYPE_CHECKING:
    from anypod.worker.parent import Worker

__all__ = ["Worker", "WorkerOptions"]


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from anypod.worker.parent import Worker

        return Worker
    raise AttributeError(name)
