"""The worker parent: takes jobs over the RunPod worker protocol, runs them in a child process,
and reports progress, stream chunks and results. Never imports the user's code.

A crash, OOM or hang in the child never takes the parent down: the parent fails the jobs the
child held (with a message saying why), starts a fresh child, and goes on taking jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable

import orjson

from anypod import batching, errors, types
from anypod.client import AsyncClient
from anypod.worker import events
from anypod.worker.coalesce import DoneCoalescer
from anypod.worker.process import ChildProcess

log = logging.getLogger("anypod.worker")
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    server: str
    fallback_servers: tuple[str, ...] = ()  # replicas to fail over to when server is unreachable
    endpoint: str
    token: str
    handler: str
    worker_id: str
    concurrency: int = 1
    gpu: str | None = None
    ping_interval: float = 10.0
    stop_grace: float = 5.0
    shutdown_grace: float = 30.0
    result_retry_for: float = 300.0
    batch: batching.BatchSpec | None = None  # declares a batch handler (endpoint config)
    batch_size: int | None = None  # overrides a batch handler's max_size (BATCH_SIZE)
    batch_wait_ms: float | None = None  # overrides its max_wait_ms (BATCH_TIMEOUT_MS)


def detect_gpu() -> str:
    """The first GPU's name from nvidia-smi, or ``cpu``."""
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    return out.strip().splitlines()[0] if out.strip() else "cpu"


def child_env(opts: WorkerOptions, gpu: str) -> dict[str, str]:
    """Point the runpod SDK inside the child at anypod, so ``progress_update`` works unchanged."""
    base = f"{opts.server.rstrip('/')}/v2/{opts.endpoint}"
    query = f"?gpu={gpu.replace(' ', '+')}"
    return {
        "RUNPOD_POD_ID": opts.worker_id,
        "RUNPOD_AI_API_KEY": opts.token,
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/{opts.worker_id}/$ID{query}",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/{opts.worker_id}/$ID{query}",
        "ANYPOD_WORKER": "1",
    }


class Worker:
    def __init__(self, options: WorkerOptions, client: AsyncClient | None = None) -> None:
        self.opts = options
        self._clients = (
            [client]
            if client
            else [
                AsyncClient(url, options.token, raw_auth=True, http="aiohttp")
                for url in (options.server, *options.fallback_servers)
            ]
        )
        self._current = 0
        self._results = DoneCoalescer(options.endpoint, options.worker_id)

        self.gpu = options.gpu or detect_gpu()
        self.capacity = options.concurrency
        self.in_flight: dict[str, types.JSONDict] = {}  # taken, not yet finished
        self.sent: set[str] = set()  # handed to the child (the rest wait in batch buckets)
        self.buckets: batching.Buckets | None = None
        self._batch_of: dict[str, frozenset[str]] = {}
        self._batch_wake = asyncio.Event()
        self._batch_slots = 1  # batches the child runs at once (its concurrency)
        self.child: ChildProcess | None = None
        self._ready = asyncio.Event()
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._events: asyncio.Queue[tuple[ChildProcess, events.FromChild]] = asyncio.Queue()
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._refresh = False
        self._background: set[asyncio.Task[None]] = set()
        self.jobs_done = 0

    @property
    def client(self) -> AsyncClient:
        return self._clients[self._current]

    def _failover(self, failed: AsyncClient) -> None:
        """The server behind ``failed`` is unreachable: move to the next replica, if any."""
        if len(self._clients) > 1 and failed is self.client:
            self._current = (self._current + 1) % len(self._clients)
            log.warning("server unreachable; switching to %s", self.client.base_url)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self._start_child()
        tasks = [
            asyncio.create_task(c)
            for c in (
                self._take_loop(),
                self._event_loop(),
                self._ping_loop(),
                self._stop_loop(),
                self._batch_loop(),
            )
        ]
        await self._stopping.wait()
        log.info("worker %s stopping: draining %d job(s)", self.opts.worker_id, len(self.in_flight))
        tasks[0].cancel()
        await self._drain(self.opts.shutdown_grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.child is not None:
            await self.child.stop(self.opts.stop_grace)
        for client in self._clients:
            await client.aclose()

    async def _drain(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self.in_flight or self._chains) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    # --- child lifecycle ---------------------------------------------------------------------

    async def _start_child(self) -> None:
        self._ready.clear()
        backoff = 0.5
        while True:
            child = ChildProcess(
                self.opts.handler,
                child_env(self.opts, self.gpu),
                self.opts.concurrency,
                self._deliver,
            )
            try:
                ready = await child.start()
                break
            except errors.HandlerLoadError as exc:
                log.error("%s; retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
        self.child, self.capacity = child, ready.concurrency
        declared = ready.batch or self.opts.batch
        if declared is not None:
            spec = declared.with_overrides(self.opts.batch_size, self.opts.batch_wait_ms)
            if self.buckets is None or self.buckets.spec != spec:
                self.buckets = batching.Buckets(spec)
            self._batch_slots = ready.concurrency
            # one more batch than the child runs: the next one fills while the current one runs
            self.capacity = spec.max_size * (ready.concurrency + 1)
        log.info(
            "handler %s ready (pid %s, concurrency %d%s)",
            self.opts.handler,
            child.pid,
            ready.concurrency,
            f", batches of up to {self.buckets.spec.max_size}" if self.buckets else "",
        )
        self._ready.set()
        self._slot.set()
        self._batch_wake.set()

    def _deliver(self, child: ChildProcess, event: events.FromChild) -> None:
        self._events.put_nowait((child, event))

    async def _restart_child(self, reason: str) -> None:
        """Kill the child; fail the jobs it still held, saying ``reason``; start a fresh one."""
        old, self.child = self.child, None
        self._ready.clear()
        if old is not None:
            old.kill()
        for job_id in list(self.sent):  # jobs still waiting in batch buckets are kept
            self._fail(job_id, reason)
        await self._start_child()

    def _forget(self, job_id: str) -> types.JSONDict | None:
        self.sent.discard(job_id)
        self._batch_of.pop(job_id, None)
        return self.in_flight.pop(job_id, None)

    def _fail(self, job_id: str, message: str) -> None:
        self._forget(job_id)
        body = orjson.dumps({"error": message})
        self._post(job_id, lambda c: c.done(self.opts.endpoint, self.opts.worker_id, job_id, body))

    # --- loops -------------------------------------------------------------------------------

    async def _take_loop(self) -> None:
        backoff = 0.5
        while True:
            await self._ready.wait()
            free = self.capacity - len(self.in_flight)
            if free <= 0 or self._refresh:
                self._slot.clear()
                await self._slot.wait()
                continue
            client = self.client
            try:
                jobs = await client.take(
                    self.opts.endpoint,
                    self.opts.worker_id,
                    batch_size=free,
                    busy=bool(self.in_flight),
                )
                backoff = 0.5
            except errors.AnypodError as exc:
                if isinstance(exc, errors.Unreachable):
                    self._failover(client)
                log.warning("job-take failed: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
                continue
            for job in jobs:
                self._dispatch(job)

    def _dispatch(self, job: types.JSONDict) -> None:
        if self.child is None:
            self._fail(job["id"], "worker had no handler process to run the job")
            return
        self.in_flight[job["id"]] = job
        if self.buckets is None:
            self.sent.add(job["id"])
            self.child.send(events.RunJob(job))
            return
        self.buckets.add(job, asyncio.get_running_loop().time())
        self._batch_wake.set()

    async def _batch_loop(self) -> None:
        """Release batches when a bucket fills or its first job has waited max_wait_ms."""
        loop = asyncio.get_running_loop()
        while True:
            free = self._batch_slots - len(set(self._batch_of.values()))
            deadline = self.buckets.next_deadline() if self.buckets and free > 0 else None
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._batch_wake.wait()
            self._batch_wake.clear()
            await self._ready.wait()
            free = self._batch_slots - len(set(self._batch_of.values()))
            if self.buckets is not None and self.child is not None and free > 0:
                # while the child is busy, buckets keep filling instead of leaving half-empty
                for batch in self.buckets.release(loop.time(), limit=free):
                    self._send_batch(batch)

    def _send_batch(self, batch: list[types.JSONDict]) -> None:
        assert self.child is not None
        ids = frozenset(job["id"] for job in batch)
        for job_id in ids:
            self._batch_of[job_id] = ids
        self.sent.update(ids)
        self.child.send(events.RunBatch(batch))

    async def _event_loop(self) -> None:
        while True:
            child, event = await self._events.get()
            if child is not self.child:
                continue  # from a child we already replaced
            await self._handle(event)

    async def _handle(self, event: events.FromChild) -> None:
        ep, wid = self.opts.endpoint, self.opts.worker_id
        match event:
            case events.Progress(pid, update) if pid in self.in_flight:
                self._post(pid, lambda c: c.done(ep, wid, pid, update))
            case events.Chunk(cid, chunk) if cid in self.in_flight:
                self._post(cid, lambda c: c.stream_chunk(ep, wid, cid, chunk))
            case events.Done(job_id, body, is_stream, refresh):
                self._finished(job_id, body, is_stream, refresh)
            case events.Concurrency(value):
                self.capacity = value
                self._slot.set()
            case events.Exited(code):
                await self._restart_child(_exit_message(code))

    def _finished(self, job_id: str, body: bytes | None, is_stream: bool, refresh: bool) -> None:
        if self._forget(job_id) is None:
            return
        self.jobs_done += 1
        if body is not None:
            self._post(job_id, lambda c: self._results.done(c, job_id, body, is_stream))
        if refresh:
            self._refresh = True
        if self._refresh and not self.in_flight:
            self._refresh = False
            self._background.add(asyncio.create_task(self._restart_child("worker refresh")))
        self._slot.set()
        self._batch_wake.set()  # a batch may have ended: release the next one

    async def _ping_loop(self) -> None:
        while True:
            client = self.client
            try:
                await client.ping(
                    self.opts.endpoint, self.opts.worker_id, list(self.in_flight), gpu=self.gpu
                )
            except errors.AnypodError as exc:
                if isinstance(exc, errors.Unreachable):
                    self._failover(client)
                log.warning("ping failed: %s", exc)
            await asyncio.sleep(self.opts.ping_interval)

    async def _stop_loop(self) -> None:
        while True:
            try:
                stops = await self.client.stops(self.opts.endpoint, self.opts.worker_id)
            except errors.AnypodError as exc:
                log.debug("job-stop poll failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for job_id in stops:
                await self._stop_job(job_id)

    async def _stop_job(self, job_id: str) -> None:
        if job_id not in self.in_flight or self.child is None:
            return
        log.info("stopping job %s (cancelled or timed out on the server)", job_id)
        if job_id not in self.sent:  # still waiting in a batch bucket
            if self.buckets is not None:
                self.buckets.discard(job_id)
            self._forget(job_id)
            return
        batch = self._batch_of.get(job_id)
        if batch is not None:
            self._forget(job_id)  # its result will be dropped; stop the batch once it is empty
            if not batch & self.sent:
                await self._restart_child(f"handler process restarted to stop batch of {job_id}")
            return
        if self.capacity == 1:
            self._forget(job_id)
            await self._restart_child(f"handler process restarted to stop job {job_id}")
            return
        self.child.send(events.CancelJob(job_id))
        await asyncio.sleep(self.opts.stop_grace)
        if job_id in self.in_flight:  # the handler ignored the cancel (blocking code)
            self._forget(job_id)
            await self._restart_child(f"handler process restarted to stop job {job_id}")

    # --- posting -----------------------------------------------------------------------------

    def _post(self, job_id: str, send: Callable[[AsyncClient], Awaitable[None]]) -> None:
        """Send in order per job, in the background, retrying transient failures."""
        previous = self._chains.get(job_id)

        async def chained() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self._send_with_retry(job_id, send)

        task = asyncio.create_task(chained())
        self._chains[job_id] = task
        task.add_done_callback(
            lambda t: self._chains.pop(job_id, None) if self._chains.get(job_id) is t else None
        )

    async def _send_with_retry(
        self, job_id: str, send: Callable[[AsyncClient], Awaitable[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.opts.result_retry_for, 0.25
        while True:
            client = self.client
            try:
                await send(client)
                return
            except errors.ClientError as exc:
                if exc.status_code not in RETRYABLE_STATUS:
                    log.error("job %s: server refused report: %s", job_id, exc)
                    return
                failure: errors.AnypodError = exc
            except errors.Unreachable as exc:
                self._failover(client)
                failure = exc
            if loop.time() > deadline:
                log.error("job %s: giving up reporting after retries: %s", job_id, failure)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


def _exit_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"handler process was killed by {name}{hint} while running this job"
    return f"handler process exited with code {code} while running this job"
