"""Results that finish together leave in one ``job-done-batch`` post: those of the same
event-loop turn, and those that finished while the previous post was on its way (one post in
flight per server, so under load results batch up by themselves, and when idle a result
leaves at once).

A lone result still goes out as RunPod's plain ``job-done``. A post carries at most
``MAX_DONE_BATCH`` results and ``MAX_POST_BYTES`` of them (a bigger result goes alone); if the
server still finds a batch too large (413), its results go one by one. Against a server
without the batch route (404), coalescing switches itself off.
"""

from __future__ import annotations

import asyncio
import logging

from anypod import errors, types
from anypod.client import AsyncClient
from anypod.protocols.runpod.limits import MAX_DONE_BATCH, MAX_POST_BYTES

log = logging.getLogger("anypod.worker")
Jobs = list[types.JSONDict]
_Pending = tuple[str, bytes, bool, int, "asyncio.Future[Jobs]"]
"""job id, result body, is_stream, jobs to take with it, what the post's reply carried."""


class DoneCoalescer:
    def __init__(self, endpoint: str, worker_id: str) -> None:
        self.endpoint = endpoint
        self.worker_id = worker_id
        self.enabled = True
        self._pending: dict[AsyncClient, list[_Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._posting: set[AsyncClient] = set()  # a post is on its way (or about to be)

    def done(
        self, client: AsyncClient, job_id: str, body: bytes, is_stream: bool, take: int = 0
    ) -> asyncio.Future[Jobs]:
        """Queue a result, asking for up to ``take`` jobs with it; the future settles when the
        post carrying it does, with the jobs its reply carried (a batch's all go to its first
        result)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Jobs] = loop.create_future()
        self._pending.setdefault(client, []).append((job_id, body, is_stream, take, future))
        if client not in self._posting:
            self._posting.add(client)
            loop.call_soon(self._start_flush, client)
        return future

    def _start_flush(self, client: AsyncClient) -> None:
        batches = _split(self._pending.pop(client, []))
        if not batches:
            self._posting.discard(client)
            return
        left = len(batches)

        def posted(task: asyncio.Task[None]) -> None:
            nonlocal left
            self._tasks.discard(task)
            left -= 1
            if not left:  # the next post takes everything that finished meanwhile
                self._start_flush(client)

        for batch in batches:
            task = asyncio.create_task(self._flush(client, batch))
            self._tasks.add(task)
            task.add_done_callback(posted)

    async def _flush(self, client: AsyncClient, batch: list[_Pending]) -> None:
        try:
            jobs = await self._send(client, batch)
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for *_, future in batch:
            if not future.done():
                future.set_result(jobs)
                jobs = []

    async def _send(self, client: AsyncClient, batch: list[_Pending]) -> Jobs:
        """Post the batch; the jobs its reply carried (one-by-one posts settle their own)."""
        if len(batch) == 1 or not self.enabled:
            await self._send_each(client, batch)
            return []
        take = sum(item[3] for item in batch)
        try:
            refused, jobs = await client.done_many(
                self.endpoint,
                self.worker_id,
                [(job_id, body) for job_id, body, *_ in batch],
                take=take,
            )
        except errors.PayloadTooLarge:
            await self._send_each(client, batch)
            return []
        except errors.NotFound as exc:
            if type(exc) is not errors.NotFound:  # an unknown endpoint or job, not route
                raise
            log.info("server has no job-done-batch route; posting results one by one")
            self.enabled = False
            await self._send_each(client, batch)
            return []
        for item in refused:  # final answers (not held, not found): nothing to retry
            log.error("job %s: server refused result: %s", item.get("id"), item.get("error"))
        return jobs

    async def _send_each(self, client: AsyncClient, batch: list[_Pending]) -> None:
        """Plain ``job-done`` posts; each settles its own result's future."""

        async def one(
            job_id: str, body: bytes, stream: bool, take: int, future: asyncio.Future[Jobs]
        ) -> None:
            try:
                jobs = await client.done(
                    self.endpoint, self.worker_id, job_id, body, is_stream=stream, take=take
                )
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(jobs)

        await asyncio.gather(*(one(*item) for item in batch))


def _split(pending: list[_Pending]) -> list[list[_Pending]]:
    """Consecutive batches within the count and byte bounds of one post."""
    batches: list[list[_Pending]] = []
    size = 0
    for item in pending:
        if (
            not batches
            or len(batches[-1]) >= MAX_DONE_BATCH
            or size + len(item[1]) > MAX_POST_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item[1])
    return batches
