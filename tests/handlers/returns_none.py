"""Returns ``None``."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> None:
    return None
