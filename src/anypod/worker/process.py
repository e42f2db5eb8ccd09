"""The parent's handle on the child process: start it, send it events, read its events, kill it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from anypod import errors
from anypod.worker import child, events

_spawn = multiprocessing.get_context("spawn")


class ChildProcess:
    """One child. Its first event answers :meth:`start`; the rest go to ``deliver(self, event)``
    so the parent can drop events from a child it has already replaced."""

    def __init__(
        self,
        spec: str,
        env: dict[str, str],
        concurrency: int,
        deliver: Callable[[ChildProcess, events.FromChild], None],
    ) -> None:
        self.spec = spec
        self.env = env
        self.concurrency = concurrency
        self.deliver = deliver
        self._first: asyncio.Future[events.FromChild] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    async def start(self) -> events.Ready:
        """Spawn the child and wait until it has loaded the handler."""
        parent_end, child_end = _spawn.Pipe()
        self._process = _spawn.Process(
            target=child.main,
            args=(child_end, self.spec, self.env, self.concurrency, os.getpid()),
            name="anypod-handler",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._conn = parent_end
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        loop.add_reader(parent_end.fileno(), self._on_readable)  # no thread hop per message
        first = await self._first
        if isinstance(first, events.Ready):
            return first
        self.kill()
        if isinstance(first, events.LoadFailed):
            raise errors.HandlerLoadError(f"could not load {self.spec}:\n{first.message}")
        raise errors.HandlerLoadError(f"handler process exited while loading {self.spec}")

    def _on_readable(self) -> None:
        assert self._conn is not None
        while True:
            try:
                if not self._conn.poll():
                    return
                event: events.FromChild = self._conn.recv()
            except (EOFError, OSError):
                break
            self._hand_over(event)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._conn.fileno())
        self._reaper = loop.create_task(self._reap())

    async def _reap(self) -> None:
        """The child's pipe closed: wait for its exit code, then report it."""
        code = None
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 5)
            code = self._process.exitcode
        self._hand_over(events.Exited(code))

    def _hand_over(self, event: events.FromChild) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(event)
        else:
            self.deliver(self, event)

    def send(self, event: events.ToChild) -> None:
        if self._conn is None:
            raise errors.AnypodError("handler process is not running")
        self._conn.send(event)

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def stop(self, grace: float) -> None:
        """Ask the child to finish its jobs and exit; kill it after ``grace`` seconds."""
        if self._process is None:
            return
        try:
            self.send(events.Shutdown())
        except (OSError, errors.AnypodError):
            pass
        deadline = asyncio.get_running_loop().time() + grace
        while self._process.is_alive() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.kill()
