"""Keeps the embedded mode's worker processes running, restarting any that exit.

Each worker is ``python -m anypod.worker``, handed its :class:`WorkerOptions` as JSON on its
standard input: the options object is the contract, not a command line.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from anypod.worker.options import WorkerOptions

log = logging.getLogger("anypod.supervisor")


class Supervisor:
    name = "supervisor"

    def __init__(
        self,
        options: Callable[[], Awaitable[list[WorkerOptions]]],
        *,
        stop_grace: float = 30.0,
    ) -> None:
        self.options = options  # made at start: workers need the API's port and fresh tokens
        self.stop_grace = stop_grace
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(o)) for o in await self.options()]

    async def _keep(self, options: WorkerOptions) -> None:
        backoff = 0.5
        while not self.stopping():
            proc = await spawn(options)
            self.processes[options.worker_id] = proc
            if self.stopping():  # stop() ran while it was being spawned
                proc.send_signal(signal.SIGTERM)
            started = asyncio.get_running_loop().time()
            code = await proc.wait()
            if self.stopping():
                return
            lived = asyncio.get_running_loop().time() - started
            backoff = 0.5 if lived > 30 else min(backoff * 2, 30)
            log.warning(
                "worker %s exited with %s; restarting in %.1f s", options.worker_id, code, backoff
            )
            await asyncio.sleep(backoff)

    async def stop(self) -> None:
        """SIGTERM every worker (each finishes its jobs), SIGKILL what is left after the grace."""
        self._stopping = True
        running = [p for p in self.processes.values() if p.returncode is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), self.stop_grace)
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    proc.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def spawn(options: WorkerOptions) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(  # the worker id is a label for `ps` only
        sys.executable, "-m", "anypod.worker", options.worker_id, stdin=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(options.to_json())
    await proc.stdin.drain()
    proc.stdin.close()
    return proc
