"""Keeps the embedded mode's ``anypod worker`` processes running, restarting any that exit."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys

from anypod.batching import BatchSpec

log = logging.getLogger("anypod.supervisor")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerSpec:
    worker_id: str
    endpoint: str
    handler: str
    token: str
    server: str
    concurrency: int = 1
    ping_interval: float = 10.0
    batch: BatchSpec | None = None

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "anypod",
            "worker",
            self.handler,
            "--server",
            self.server,
            "--endpoint",
            self.endpoint,
            "--worker-id",
            self.worker_id,
            "--concurrency",
            str(self.concurrency),
            "--ping-interval",
            str(self.ping_interval),
        ]
        if self.batch is not None:
            args += [
                "--batch",
                "--batch-size",
                str(self.batch.max_size),
                "--batch-wait-ms",
                str(self.batch.max_wait_ms),
                "--batch-bucket",
                ",".join(self.batch.bucket),
            ]
        return args


class Supervisor:
    def __init__(self, specs: list[WorkerSpec], *, stop_grace: float = 30.0) -> None:
        self.specs = specs
        self.stop_grace = stop_grace
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(spec)) for spec in self.specs]

    async def _keep(self, spec: WorkerSpec) -> None:
        backoff = 0.5
        while not self.stopping():
            env = {**os.environ, "ANYPOD_WORKER_TOKEN": spec.token}
            proc = await asyncio.create_subprocess_exec(*spec.command(), env=env)
            self.processes[spec.worker_id] = proc
            started = asyncio.get_running_loop().time()
            code = await proc.wait()
            if self.stopping():
                return
            lived = asyncio.get_running_loop().time() - started
            backoff = 0.5 if lived > 30 else min(backoff * 2, 30)
            log.warning(
                "worker %s exited with %s; restarting in %.1f s", spec.worker_id, code, backoff
            )
            await asyncio.sleep(backoff)

    def begin_stop(self) -> None:
        """Stop restarting workers that exit (they are being signalled too)."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.processes.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        waits = [p.wait() for p in self.processes.values() if p.returncode is None]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.stop_grace)
        except TimeoutError:
            for proc in self.processes.values():
                if proc.returncode is None:
                    proc.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
