"""A component's background task, stopped: cancelled and waited for, whatever it raised. The
one way the sweeper, usage, audit and credentials loops end."""

from __future__ import annotations

import asyncio


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
