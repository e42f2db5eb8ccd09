"""Noticing that a client has hung up while its request is held.

A held ``job-take`` must not claim for a worker that is gone (killed, redeployed, restarted):
the job would sit ``IN_PROGRESS`` under a dead worker for a whole lease. The ASGI server says
so by answering ``receive()`` with ``http.disconnect``; :func:`watch` turns that into an event
the service can wait on beside its wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Receive


@contextlib.asynccontextmanager
async def watch(receive: Receive) -> AsyncIterator[asyncio.Event]:
    """An event set once the client disconnects, watched while the block runs. Only for
    requests whose body has been read (or that have none)."""
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(receive, gone))
    try:
        yield gone
    finally:
        watcher.cancel()


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
