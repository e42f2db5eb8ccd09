"""An async generator handler, no aggregate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def handler(job: dict[str, Any]) -> AsyncIterator[str]:
    for word in job["input"].get("words", ["a", "b", "c"]):
        await asyncio.sleep(0.01)
        yield word
