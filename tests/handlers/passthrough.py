"""Returns the job's ``s3Config`` and ``webhook``, as the handler received them."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    return {"s3Config": job.get("s3Config"), "webhook": job.get("webhook")}
