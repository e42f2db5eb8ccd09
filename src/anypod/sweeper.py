"""The server's background loop: timeouts, TTLs, lapsed leases, retention, webhooks.

Every replica runs one. The store's compare-and-set transitions make that safe: a job moved by
one replica is skipped by the others.
"""

from __future__ import annotations

import asyncio
import logging

from anypod import errors, notifier
from anypod.service import JobService
from anypod.webhooks import WebhookSender

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, service: JobService, sender: WebhookSender, *, interval: float = 1.0):
        self.service = service
        self.sender = sender
        self.interval = interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._sweep_forever(), name="anypod-sweeper"),
            asyncio.create_task(self._webhooks_forever(), name="anypod-webhooks"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sender.aclose()

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.service.sweep()
            except errors.StoreUnavailable as exc:
                log.warning("sweep skipped: %s", exc)
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.interval)

    async def _webhooks_forever(self) -> None:
        while not self.service.notifier.closed:  # closed: shutting down, waits return at once
            with self.service.notifier.listen(notifier.WEBHOOKS) as listener:
                try:
                    busy = await self.sender.deliver_due()
                except Exception:
                    log.exception("webhook delivery failed")
                    busy = 0
                if not busy:
                    await listener.wait(self.interval)
