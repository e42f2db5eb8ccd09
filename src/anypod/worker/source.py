"""Where a worker gets jobs and sends what becomes of them: the :class:`JobSource` seam.

:class:`HttpJobSource` speaks RunPod's worker protocol to anypod (or RunPod): it fails over
between API replicas, retries a report that failed for a passing reason, and sends results
finished together in one ``job-done-batch`` post. :class:`MemoryJobSource`
(``worker/memory_source.py``) is the fake the worker's unit tests run on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import orjson

from anypod import errors, types
from anypod.client import AsyncClient
from anypod.protocols.runpod.limits import MAX_PING_IDS
from anypod.worker.coalesce import DoneCoalescer

log = logging.getLogger("anypod.worker")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class JobSource(Protocol):
    async def take(self, limit: int, *, busy: bool) -> list[types.JSONDict]:
        """Up to ``limit`` jobs; the server may hold the call a while; [] when none came."""

    async def progress(self, job_id: str, body: bytes) -> None:
        """Deliver a progress update (a ``job-done`` body with ``status: IN_PROGRESS``)."""

    async def chunk(self, job_id: str, body: bytes) -> None:
        """Deliver one streamed chunk."""

    async def done(
        self, job_id: str, body: bytes, *, is_stream: bool, take: int = 0
    ) -> list[types.JSONDict]:
        """Deliver a job's result; returns once delivered, or given up (and logged). With
        ``take``, the server may hand over up to that many jobs with its answer: returned."""

    async def ping(self, job_ids: Sequence[str], *, gpu: str | None) -> None:
        """Say the worker is alive and which jobs it holds."""

    async def release(self, job_ids: Sequence[str]) -> None:
        """Hand taken jobs back (the worker will not run them); best effort: a job not
        released goes back anyway when its lease lapses."""

    async def stops(self) -> list[str]:
        """Ids of jobs to stop; the server holds the call until there are some."""

    async def aclose(self) -> None: ...


Send = Callable[[AsyncClient], Awaitable[object]]


class HttpJobSource:
    def __init__(
        self,
        servers: Sequence[str],
        *,
        endpoint: str,
        worker_id: str,
        token: str,
        retry_for: float = 300.0,
    ) -> None:
        self._clients = [AsyncClient(url, token, raw_auth=True, http="aiohttp") for url in servers]
        self._current = 0
        self.endpoint, self.worker_id = endpoint, worker_id
        self.retry_for = retry_for
        self._results = DoneCoalescer(endpoint, worker_id)

    @property
    def client(self) -> AsyncClient:
        return self._clients[self._current]

    def _failover(self, failed: AsyncClient) -> None:
        """The server behind ``failed`` is unreachable: move to the next replica, if any."""
        if len(self._clients) > 1 and failed is self.client:
            self._current = (self._current + 1) % len(self._clients)
            log.warning("server unreachable; switching to %s", self.client.base_url)

    async def _call(self, send: Callable[[AsyncClient], Awaitable[object]]) -> object:
        client = self.client
        try:
            return await send(client)
        except errors.Unreachable:
            self._failover(client)
            raise

    async def take(self, limit: int, *, busy: bool) -> list[types.JSONDict]:
        ep, wid = self.endpoint, self.worker_id
        taken = await self._call(lambda c: c.take(ep, wid, batch_size=limit, busy=busy))
        assert isinstance(taken, list)
        return taken

    async def ping(self, job_ids: Sequence[str], *, gpu: str | None) -> None:
        """One ping per ``MAX_PING_IDS`` held jobs (a server refuses longer lists)."""
        ids, step = list(job_ids), MAX_PING_IDS
        for part in [ids[i : i + step] for i in range(0, len(ids), step)] or [[]]:
            await self._ping(part, gpu)

    async def _ping(self, part: list[str], gpu: str | None) -> None:
        await self._call(lambda c: c.ping(self.endpoint, self.worker_id, part, gpu=gpu))

    async def stops(self) -> list[str]:
        stops = await self._call(lambda c: c.stops(self.endpoint, self.worker_id))
        assert isinstance(stops, list)
        return stops

    async def release(self, job_ids: Sequence[str]) -> None:
        ep, wid, ids = self.endpoint, self.worker_id, list(job_ids)
        try:
            await self._call(lambda c: c.release(ep, wid, ids))
        except errors.AnypodError as exc:
            log.warning("could not hand back %d job(s); their leases will lapse: %s", len(ids), exc)

    async def progress(self, job_id: str, body: bytes) -> None:
        await self._deliver(job_id, lambda c: c.done(self.endpoint, self.worker_id, job_id, body))

    async def chunk(self, job_id: str, body: bytes) -> None:
        ep, wid = self.endpoint, self.worker_id
        await self._deliver(job_id, lambda c: c.stream_chunk(ep, wid, job_id, body))

    async def done(
        self, job_id: str, body: bytes, *, is_stream: bool, take: int = 0
    ) -> list[types.JSONDict]:
        got: list[types.JSONDict] = []

        async def send(client: AsyncClient) -> None:
            nonlocal take
            asked, take = take, 0  # a retry asks for none: the take loop has moved on
            try:
                got.extend(await self._results.done(client, job_id, body, is_stream, asked))
            except errors.PayloadTooLarge as exc:  # fail the job now, saying why: not 3 runs
                log.error("job %s: result refused as too large: %s", job_id, exc)
                failed = orjson.dumps({"error": f"the job's result was too large: {exc.message}"})
                await self._results.done(client, job_id, failed, False)

        await self._deliver(job_id, send)
        return got

    async def _deliver(self, job_id: str, send: Send) -> None:
        """Send, retrying failures that may pass (unreachable, 5xx, 429) for ``retry_for``."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.retry_for, 0.25
        while True:
            client = self.client
            try:
                await send(client)
                return
            except errors.Unreachable as exc:
                self._failover(client)
                failure: errors.AnypodError = exc
            except errors.AnypodError as exc:
                if exc.status_code not in RETRYABLE_STATUS:
                    log.error("job %s: server refused report: %s", job_id, exc)
                    return
                failure = exc
            if loop.time() > deadline:
                log.error("job %s: giving up reporting after retries: %s", job_id, failure)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
