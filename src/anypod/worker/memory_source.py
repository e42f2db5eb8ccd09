"""A job source in memory: the fake the worker's unit tests run on.

Put jobs in with :meth:`put`, ask for a stop with :meth:`stop`; what the worker reported is in
:attr:`reports` (kind, job id, decoded body), and :meth:`result` waits for a job's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from anypod import types


class MemoryJobSource:
    def __init__(self, *, hold: float = 0.2) -> None:
        self.hold = hold
        self.queue: list[types.JSONDict] = []
        self.reports: list[tuple[str, str, Any]] = []
        self.pings: list[tuple[str, ...]] = []
        self.takes: list[int] = []  # the limit of each take that returned jobs
        self.with_results: list[str] = []  # jobs handed over with a result's answer
        self.asked_with_results: list[int] = []  # what each result asked for (``take``)
        self.released: list[str] = []  # handed back with ``release``
        self._stops: list[str] = []
        self._changed = asyncio.Condition()

    async def put(self, *jobs: types.JSONDict) -> None:
        async with self._changed:
            self.queue.extend(jobs)
            self._changed.notify_all()

    async def stop(self, job_id: str) -> None:
        async with self._changed:
            self._stops.append(job_id)
            self._changed.notify_all()

    async def result(self, job_id: str, timeout: float = 10.0) -> Any:
        """The decoded ``job-done`` body of ``job_id``, once the worker has posted it."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self._result(job_id)), timeout)
            return self._result(job_id)

    def _result(self, job_id: str) -> Any:
        found = [body for kind, jid, body in self.reports if kind == "done" and jid == job_id]
        return found[0] if found else None

    def of(self, kind: str, job_id: str) -> list[Any]:
        return [body for k, jid, body in self.reports if k == kind and jid == job_id]

    async def _wait(self, ready: Any) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), self.hold)
            except TimeoutError:
                pass

    async def take(self, limit: int, *, busy: bool) -> list[types.JSONDict]:
        await self._wait(lambda: bool(self.queue))
        taken, self.queue = self.queue[:limit], self.queue[limit:]
        if taken:
            self.takes.append(limit)
        return taken

    async def _report(self, kind: str, job_id: str, body: bytes) -> None:
        async with self._changed:
            self.reports.append((kind, job_id, orjson.loads(body)))
            self._changed.notify_all()

    async def progress(self, job_id: str, body: bytes) -> None:
        await self._report("progress", job_id, body)

    async def chunk(self, job_id: str, body: bytes) -> None:
        await self._report("chunk", job_id, body)

    async def done(
        self, job_id: str, body: bytes, *, is_stream: bool, take: int = 0
    ) -> list[types.JSONDict]:
        await self._report("done", job_id, body)
        self.asked_with_results.append(take)
        taken, self.queue = self.queue[:take], self.queue[take:]
        self.with_results.extend(job["id"] for job in taken)
        return taken

    async def release(self, job_ids: Sequence[str]) -> None:
        self.released.extend(job_ids)

    async def ping(self, job_ids: Sequence[str], *, gpu: str | None) -> None:
        self.pings.append(tuple(job_ids))

    async def stops(self) -> list[str]:
        await self._wait(lambda: bool(self._stops))
        found, self._stops = self._stops, []
        return found

    async def aclose(self) -> None:
        pass
