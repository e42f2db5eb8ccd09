"""Returns its input."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    return {"echo": job["input"], "job_id": job["id"]}
