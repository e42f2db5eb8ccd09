"""The child process: loads the user's handler and runs jobs; never imports the store or HTTP.

Jobs arrive as :class:`events.RunJob`; each runs as an asyncio task (sync code in a thread), and
its progress, stream chunks and result go back as events built by :mod:`results`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from anypod import reporting, types
from anypod.protocols.runpod import results
from anypod.worker import events, lifeline, loader


def main(
    conn: Connection, spec: str, env: dict[str, str], concurrency: int, parent_pid: int
) -> None:
    """Process entry point (``multiprocessing`` spawn target)."""
    lifeline.die_with_parent(parent_pid)
    lifeline.leave_signals_to_parent()
    os.environ.update(env)
    try:
        loaded = loader.load(spec)
        limit = loaded.concurrency(concurrency)
    except BaseException as exc:
        conn.send(events.LoadFailed("".join(traceback.format_exception(exc))))
        return
    child = Child(conn, loaded, env.get("RUNPOD_POD_ID", "unknown"), limit)
    asyncio.run(child.serve())


class Child:
    def __init__(self, conn: Connection, loaded: loader.Loaded, worker_id: str, limit: int):
        self.conn = conn
        self.loaded = loaded
        self.worker_id = worker_id
        self.limit = limit
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._send_lock = threading.Lock()

    def send(self, event: events.FromChild) -> None:
        with self._send_lock:
            self.conn.send(event)

    async def serve(self) -> None:
        reporting.install(
            lambda job_id, value: self.send(
                events.Progress(job_id, results.encode({"status": "IN_PROGRESS", "output": value}))
            )
        )
        self.send(events.Ready(self.limit, self.loaded.is_generator, self.loaded.batch))
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.conn.fileno(), self._on_readable)  # no thread hop per message
        await self._closed
        loop.remove_reader(self.conn.fileno())
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def _on_readable(self) -> None:
        while not self._closed.done():
            try:
                if not self.conn.poll():
                    return
                event: events.ToChild = self.conn.recv()
            except (EOFError, OSError):
                event = events.Shutdown()
            self._handle(event)

    def _handle(self, event: events.ToChild) -> None:
        if isinstance(event, events.Shutdown):
            self._closed.set_result(None)
        elif isinstance(event, events.RunJob):
            job_id = event.job["id"]
            self.tasks[job_id] = asyncio.create_task(self._run(event.job))
        elif isinstance(event, events.RunBatch):
            task = asyncio.create_task(self._run_batch(event.jobs))
            self.tasks.update({job["id"]: task for job in event.jobs})
        elif isinstance(event, events.CancelJob) and event.job_id in self.tasks:
            self.tasks[event.job_id].cancel()

    async def _run(self, job: types.JSONDict) -> None:
        job_id = job["id"]
        refresh = bool(self.loaded.config.get("refresh_worker"))
        try:
            if self.loaded.is_generator:
                body = await self._run_generator(job, refresh)
            else:
                body = results.returned(await self._call(job), refresh_worker=refresh)
        except asyncio.CancelledError:
            self.send(events.Done(job_id, None))
            return
        except Exception as exc:
            body = results.raised(exc, worker_id=self.worker_id)
        finally:
            self.tasks.pop(job_id, None)
        refresh = refresh or bool(body.get("stopPod"))  # {"refresh_worker": True} returned
        self.send(events.Done(job_id, results.encode(body), self.loaded.is_generator, refresh))
        self._report_concurrency()

    async def _run_batch(self, jobs: list[types.JSONDict]) -> None:
        """One call for the whole batch; an item's error fails only that job."""
        try:
            outputs = await self._call(jobs)
            if not isinstance(outputs, list | tuple) or len(outputs) != len(jobs):
                raise TypeError(
                    f"batch handler must return a list of {len(jobs)} results, "
                    f"got {type(outputs).__name__} of {_length(outputs)}"
                )
            bodies: list[types.JSONDict | None] = [results.returned(out) for out in outputs]
        except asyncio.CancelledError:
            bodies = [None] * len(jobs)
        except Exception as exc:
            bodies = [results.raised(exc, worker_id=self.worker_id)] * len(jobs)
        for job, body in zip(jobs, bodies, strict=True):
            self.tasks.pop(job["id"], None)
            self.send(events.Done(job["id"], None if body is None else results.encode(body)))

    async def _call(self, arg: Any) -> Any:
        handler = self.loaded.handler
        if inspect.iscoroutinefunction(handler):
            return await handler(arg)
        # One job at a time: run it right here, as RunPod does; otherwise keep the loop free.
        value = handler(arg) if self.limit == 1 else await asyncio.to_thread(handler, arg)
        if inspect.isawaitable(value):
            value = await value
        return value

    async def _run_generator(self, job: types.JSONDict, refresh: bool) -> types.JSONDict:
        items: list[Any] = []
        try:
            async for item in _iterate(self.loaded.handler(job)):
                error = results.yielded_error(item)
                if error is not None:
                    return {"error": error}
                items.append(item)
                self.send(events.Chunk(job["id"], results.encode({"output": item})))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return results.generator_error(exc)
        aggregate = bool(self.loaded.config.get("return_aggregate_stream"))
        return results.generator_done(items, aggregate=aggregate, refresh_worker=refresh)

    def _report_concurrency(self) -> None:
        if self.loaded.config.get("concurrency_modifier") is None:
            return
        value = self.loaded.concurrency(self.limit)
        if value != self.limit:
            self.limit = value
            self.send(events.Concurrency(value))


_DONE = object()


def _length(value: Any) -> str:
    return str(len(value)) if hasattr(value, "__len__") else "?"


async def _iterate(gen: Any) -> Any:
    """Iterate a sync or async generator without blocking the loop on sync steps."""
    if inspect.isasyncgen(gen):
        async for item in gen:
            yield item
        return
    while (item := await asyncio.to_thread(next, gen, _DONE)) is not _DONE:
        yield item
