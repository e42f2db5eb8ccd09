"""Raises ``ValueError(input.message)``."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> None:
    raise ValueError(job["input"].get("message", "boom"))
