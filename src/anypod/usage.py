"""Usage per key, endpoint and day: jobs submitted and by final status, execution time, bytes in
and out. Counted in memory as jobs are submitted and end, and added to the store about once a
second in one transaction (and at shutdown): the hot path never waits on a usage write. A
replica killed with -9 loses at most that second's counts, never a job.

Quotas read the stored sums plus what this replica has not written yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from anypod import background, errors, jobs
from anypod.store import Store
from anypod.store.tenancy import FINAL_COLUMNS, UsageCounts, UsageKey, UsageRow, day_of

log = logging.getLogger(__name__)
TenantOf = Callable[[str | None], Awaitable[str | None]]


class UsageMeter:
    name = "usage"

    def __init__(
        self,
        store: Store,
        tenant_of: TenantOf,
        *,
        clock: Callable[[], float],
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.tenant_of = tenant_of
        self.clock = clock
        self.interval = interval
        self._pending: dict[tuple[str, str, str], UsageCounts] = {}  # (day, key, endpoint)
        self._task: asyncio.Task[None] | None = None

    def submitted(self, owner: str | None, endpoint: str, bytes_in: int) -> None:
        if owner is not None:
            counts = self._counts(owner, endpoint, self.clock())
            counts.submitted += 1
            counts.bytes_in += bytes_in

    def ended(self, job: jobs.Job) -> None:
        column = FINAL_COLUMNS.get(job.status)
        if job.owner is None or column is None:
            return
        counts = self._counts(job.owner, job.endpoint, job.finished_at or self.clock())
        setattr(counts, column, getattr(counts, column) + 1)
        if job.started_at is not None and job.finished_at is not None:
            counts.execution_ms += max(0, round((job.finished_at - job.started_at) * 1000))
        counts.bytes_out += len(job.output or b"")

    def cancelled(self, owners: list[str | None], endpoint: str) -> None:
        """Queued jobs ended together (a purge): a cancel each, no time, no output."""
        for owner in owners:
            if owner is not None:
                self._counts(owner, endpoint, self.clock()).cancelled += 1

    def pending(self, key_id: str, since_day: str) -> UsageCounts:
        total = UsageCounts()
        for (day, key, _), counts in self._pending.items():
            if key == key_id and day >= since_day:
                total.add(counts)
        return total

    def _counts(self, owner: str, endpoint: str, at: float) -> UsageCounts:
        return self._pending.setdefault((day_of(at), owner, endpoint), UsageCounts())

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        rows = [
            UsageRow(UsageKey(day, key, endpoint, await self.tenant_of(key) or "-"), counts)
            for (day, key, endpoint), counts in pending.items()
        ]
        try:
            await self.store.add_usage(rows)
        except errors.StoreUnavailable:
            for row in rows:  # keep them for the next try
                k = (row.key.day, row.key.key_id, row.key.endpoint)
                self._pending.setdefault(k, UsageCounts()).add(row.counts)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await background.cancel(self._task)
        self._task = None
        with contextlib.suppress(errors.AnypodError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing usage failed; will retry")
