"""anypod: run RunPod-style serverless handlers on machines you own."""

from __future__ import annotations

from anypod import errors, serverless
from anypod.batching import batch
from anypod.client import AsyncClient, Client
from anypod.jobs import JobStatus
from anypod.reporting import progress

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "JobStatus", "batch", "errors", "progress", "serverless"]
