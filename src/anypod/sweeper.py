"""The server's sweep loop: timeouts, TTLs, lapsed leases, retention (:meth:`JobService.sweep`).

Every replica runs one. The store's compare-and-set moves make that safe: a job moved by one
replica is skipped by the others.
"""

from __future__ import annotations

import asyncio
import logging

from anypod import background, errors
from anypod.service import JobService

log = logging.getLogger(__name__)


class Sweeper:
    name = "sweeper"

    def __init__(self, service: JobService, *, interval: float = 1.0) -> None:
        self.service = service
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sweep_forever(), name="anypod-sweeper")

    async def stop(self) -> None:
        await background.cancel(self._task)
        self._task = None

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.service.sweep()
            except errors.StoreUnavailable as exc:  # the store logs its outage, once
                log.debug("sweep skipped: %s", exc)
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.interval)
