"""anypod: run RunPod-style serverless handlers on machines you own.

The public API is :data:`__all__`. The SDK classes load on first use, so a handler process
that imports ``anypod`` (for ``anypod.progress``) pulls in no HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anypod import errors, serverless
from anypod.batching import batch
from anypod.jobs import JobStatus
from anypod.reporting import progress

if TYPE_CHECKING:
    from anypod.client import AsyncClient, Client

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "JobStatus", "batch", "errors", "progress", "serverless"]


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client"):
        from anypod import client

        return getattr(client, name)
    raise AttributeError(f"module 'anypod' has no attribute {name!r}")
