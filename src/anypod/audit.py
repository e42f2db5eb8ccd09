"""The audit log: who did what that matters to security. Keys created, rotated and revoked;
worker tokens created and revoked; every admin call; job cancels, retries and purges; and
failed authentication, aggregated per source address and minute (one entry with a count, not
one per attempt). Entries are appended and never changed (the databases refuse an UPDATE of
the table); entries older than the retention are deleted.

Failed authentication is also throttled here: a source address with more than
``failures_allowed`` failures in a minute gets 429 for the rest of that minute, before any key
is looked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import orjson

from anypod import background, errors
from anypod.store import Store
from anypod.store.tenancy import AuditEntry

log = logging.getLogger(__name__)
WINDOW = 60.0
MAX_SOURCES = 10_000


class AuditTrail:
    name = "audit"

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float],
        retention_days: float = 90.0,
        failures_allowed: int = 30,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention_days * 86400
        self.failures_allowed = failures_allowed
        self._failures: dict[str, int] = {}  # source → failures in this window
        self._window = clock()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        tenant: str | None = None,
        target: str | None = None,
        source: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        entry = AuditEntry(
            at=self.clock(),
            action=action,
            actor=actor,
            tenant=tenant,
            target=target,
            source=source,
            detail=None if detail is None else orjson.dumps(detail).decode(),
        )
        await self.store.append_audit([entry])

    # --- failed authentication ---------------------------------------------------------------

    def throttled(self, source: str) -> float | None:
        """Seconds until ``source`` may try again, when it has failed too often."""
        self._roll()
        if self._failures.get(source, 0) > self.failures_allowed:
            return max(1.0, self._window + WINDOW - self.clock())
        return None

    def failed(self, source: str) -> None:
        self._roll()
        if source not in self._failures and len(self._failures) >= MAX_SOURCES:
            source = "(other addresses)"
        self._failures[source] = self._failures.get(source, 0) + 1

    def _roll(self) -> None:
        if self.clock() - self._window >= WINDOW:
            self._flush_failures()

    def _flush_failures(self) -> None:
        failures, self._failures, start = self._failures, {}, self._window
        self._window = self.clock()
        if failures:
            entries = [
                AuditEntry(
                    at=start,
                    action="auth.failed",
                    source=source,
                    detail=orjson.dumps({"count": n, "window_s": WINDOW}).decode(),
                )
                for source, n in failures.items()
            ]
            task = asyncio.get_running_loop().create_task(self._append(entries))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _append(self, entries: list[AuditEntry]) -> None:
        try:
            await self.store.append_audit(entries)
        except errors.AnypodError as exc:
            log.warning("audit: %d auth-failure entries not written: %s", len(entries), exc)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await background.cancel(self._task)
        self._task = None
        self._flush_failures()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(WINDOW, 10.0))
            self._roll()
            with contextlib.suppress(errors.AnypodError):
                await self.store.purge_audit(self.clock() - self.retention)
