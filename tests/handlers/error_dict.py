"""Returns ``{"error": input.message}``: RunPod's way for a handler to fail without raising."""

from __future__ import annotations

from typing import Any


def handler(job: dict[str, Any]) -> dict[str, Any]:
    return {"error": job["input"].get("message", "bad thing")}
