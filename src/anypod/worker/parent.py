"""The worker parent: takes jobs from a :class:`JobSource`, runs them in a child process, and
reports their progress, stream chunks and results. Never imports the user's code.

Each job the worker holds has one record (:mod:`worker.records`) whose state says where it is.
A crash, OOM or hang in the child never takes the parent down: the parent fails the jobs the
child was running (with a message saying why), starts a fresh child, and goes on; jobs not yet
handed over wait for the new child. Reports of one job are posted in order, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import orjson

from anypod import batching, errors, types
from anypod.protocols.runpod.worker_env import handler_env
from anypod.worker import events, gpu
from anypod.worker.options import WorkerOptions
from anypod.worker.pace import SHORT_JOB, Pace
from anypod.worker.process import ChildProcess
from anypod.worker.records import JobRecord, JobState, Records
from anypod.worker.source import HttpJobSource, JobSource

log = logging.getLogger("anypod.worker")
Post = Callable[[], Awaitable[None]]
FATAL = (errors.Unauthorized, errors.EndpointNotFound)
"""A job-take answered with these will be answered the same way forever."""
INBOUND_PATIENCE = 1.0  # seconds the take loop waits for jobs a result's answer may carry


class Worker:
    def __init__(self, options: WorkerOptions, source: JobSource) -> None:
        self.opts = options
        self.source = source
        self.gpu = options.gpu or gpu.detect()
        self.records = Records()
        self.capacity = options.concurrency
        self.buckets: batching.Buckets | None = None
        self._batch_slots = 1  # batches the child runs at once (its concurrency)
        self.child: ChildProcess | None = None
        self._ready = asyncio.Event()
        self._slot = asyncio.Event()
        self._batch_wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._events: asyncio.Queue[tuple[ChildProcess, events.FromChild]] = asyncio.Queue()
        self._posts: dict[str, asyncio.Task[None]] = {}  # each job's latest post
        self._refresh = False
        self._background: set[asyncio.Task[None]] = set()
        self.fatal: errors.AnypodError | None = None  # why the worker gave up, if it did
        self.pace = Pace()
        self._sent_at: dict[str, float] = {}  # job id → when the child got it
        self._inbound = 0  # jobs asked for with results in flight (``?next=``)
        self._inbound_at = 0.0

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self._start_child()
        loops = [
            asyncio.create_task(loop())
            for loop in (
                self._take_loop,
                self._event_loop,
                self._ping_loop,
                self._stop_loop,
                self._batch_loop,
                self._overrun_loop,
            )
        ]
        await self._stopping.wait()
        log.info("worker %s stopping: draining %d job(s)", self.opts.worker_id, len(self.records))
        loops[0].cancel()  # take nothing more
        await self._hand_back("the worker is stopping")  # jobs not started go back at once
        await self._drain(self.opts.shutdown_grace)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self.child is not None:
            await self.child.stop(self.opts.stop_grace)
        await self.source.aclose()

    async def _drain(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self.records or self._posts) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    # --- prefetch ------------------------------------------------------------------------------

    async def _overrun_loop(self) -> None:
        """Prefetch assumed short jobs. When the running one outlasts that (a long job after
        short ones), count it as long at once and hand the jobs waiting behind it back."""
        while True:
            await asyncio.sleep(SHORT_JOB / 2)
            if not self.pace.short or not any(self.records.in_state(JobState.TAKEN)):
                continue
            now = asyncio.get_running_loop().time()
            started = [
                self._sent_at[r.id]
                for r in self.records.in_state(JobState.RUNNING)
                if r.id in self._sent_at
            ]
            if started and now - min(started) > SHORT_JOB:
                self.pace.overran(now - min(started))
                await self._hand_back("a job outran the ones before it")

    async def _hand_back(self, why: str) -> None:
        """Release the jobs taken but not started (non-batch): others may run them now."""
        if self.buckets is not None:
            return
        waiting = [r for r in self.records.in_state(JobState.TAKEN)]
        if not waiting:
            return
        for record in waiting:
            self.records.forget(record.id)
        log.info("handing %d taken job(s) back: %s", len(waiting), why)
        await self.source.release([r.id for r in waiting])
        self._slot.set()

    # --- the child ---------------------------------------------------------------------------

    async def _start_child(self) -> None:
        self._ready.clear()
        backoff = 0.5
        opts = self.opts
        env = handler_env(opts.server, opts.endpoint, opts.worker_id, opts.token, gpu=self.gpu)
        env["ANYPOD_WORKER"] = "1"
        while True:
            child = ChildProcess(opts.handler, env, opts.concurrency, self._deliver)
            try:
                ready = await child.start()
                break
            except errors.HandlerLoadError as exc:
                log.error("%s; retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
        self.child, self.capacity = child, ready.concurrency
        self._use_batches(ready)
        log.info(
            "handler %s ready (pid %s, concurrency %d%s)",
            self.opts.handler,
            child.pid,
            ready.concurrency,
            f", batches of up to {self.buckets.spec.max_size}" if self.buckets is not None else "",
        )
        self._ready.set()
        self._slot.set()
        self._batch_wake.set()
        self._hand_over()

    def _use_batches(self, ready: events.Ready) -> None:
        declared = ready.batch or self.opts.batch
        if declared is None:
            return
        spec = declared.with_overrides(self.opts.batch_size, self.opts.batch_wait_ms)
        if self.buckets is None or self.buckets.spec != spec:
            self.buckets = batching.Buckets(spec)
        self._batch_slots = ready.concurrency
        # one more batch than the child runs: the next one fills while the current one runs
        self.capacity = spec.max_size * (ready.concurrency + 1)

    def _deliver(self, child: ChildProcess, event: events.FromChild) -> None:
        self._events.put_nowait((child, event))

    async def _restart_child(self, reason: str) -> None:
        """Kill the child; fail the jobs it was running, saying ``reason``; start a fresh one."""
        old, self.child = self.child, None
        self._ready.clear()
        self._refresh = False  # a fresh child is what a refresh asks for
        self._sent_at.clear()
        if old is not None:
            old.kill()
        for record in self.records.in_state(JobState.RUNNING):
            self._fail(record, reason)
        await self._start_child()

    def _fail(self, record: JobRecord, message: str) -> None:
        self.records.move(record.id, JobState.REPORTING)
        body = orjson.dumps({"error": message})
        self._report_result(record, body, is_stream=False)

    def _send(self, event: events.ToChild) -> bool:
        """Hand ``event`` to the child; False when there is none (any more)."""
        if self.child is None:
            return False
        try:
            self.child.send(event)
        except OSError:  # it just died; its Exited event restarts it
            return False
        return True

    # --- taking ------------------------------------------------------------------------------

    async def _take_loop(self) -> None:
        backoff = 0.5
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            free = self._takes() - self.records.slots_used
            inbound = self._inbound if loop.time() - self._inbound_at < INBOUND_PATIENCE else 0
            if not self.records.slots_used and self.pace.short:
                inbound = 0  # short jobs, none to run: ask now; a job more is no hoard here
            if free - inbound <= 0 or self._refresh:
                self._slot.clear()
                with contextlib.suppress(TimeoutError):  # inbound jobs may not come
                    async with asyncio.timeout(INBOUND_PATIENCE if free > 0 else None):
                        await self._slot.wait()
                continue
            try:
                taken = await self.source.take(free, busy=bool(self.records))
                backoff = 0.5
            except FATAL as exc:  # retrying cannot help: say so and exit
                self.fatal = exc
                self.request_stop()
                return
            except errors.AnypodError as exc:
                log.warning("job-take failed: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
                continue
            for job in taken:
                self.records.add(job)
            self._hand_over()

    def _target(self) -> int:
        """How many jobs to hold: what the child runs at once, and more while jobs are short
        (:class:`Pace`). A batch handler's buckets already hold the next batch."""
        if self.buckets is not None:
            return self.capacity
        return self.capacity + self.pace.prefetch

    def _takes(self) -> int:
        """How many jobs a held ``job-take`` may hold: what the child runs at once. Prefetch
        comes only with results (``?next=``: jobs already queued), never from a take held
        for jobs yet to come, which would grab them from workers sitting idle."""
        return self.capacity if self.buckets is None else self._target()

    def _hand_over(self) -> None:
        """Give taken jobs to the child (as many as it runs at once), or to the buckets;
        none to a child that asked to be replaced (``refresh_worker``)."""
        if self._refresh and self.buckets is None:
            return
        now = asyncio.get_running_loop().time()
        running = self.records.running
        for record in self.records.in_state(JobState.TAKEN):
            if self.buckets is not None:
                self.records.move(record.id, JobState.BUFFERED)
                self.buckets.add(record.job, now)
                self._batch_wake.set()
            elif running >= self.capacity:
                return  # a prefetched job waits here, not in the child (it can still be stopped)
            elif self._send(events.RunJob(record.job)):
                self.records.move(record.id, JobState.RUNNING)
                self._sent_at[record.id] = now
                running += 1
            else:
                return

    async def _batch_loop(self) -> None:
        """Release batches when a bucket fills or its first job has waited max_wait_ms."""
        loop = asyncio.get_running_loop()
        while True:
            free = self._batch_slots - self.records.running_batches()
            deadline = self.buckets.next_deadline() if self.buckets and free > 0 else None
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._batch_wake.wait()
            self._batch_wake.clear()
            await self._ready.wait()
            free = self._batch_slots - self.records.running_batches()
            if self.buckets is not None and free > 0:
                # while the child is busy, buckets keep filling instead of leaving half-empty
                for batch in self.buckets.release(loop.time(), limit=free):
                    self._send_batch(batch)

    def _send_batch(self, batch: list[types.JSONDict]) -> None:
        ids = frozenset(job["id"] for job in batch)
        sent = self._send(events.RunBatch(batch))
        for job_id in ids:
            if sent:
                self.records.move(job_id, JobState.RUNNING, batch=ids)
            else:  # no child: wait for the next one, and a fresh bucket
                self.records.move(job_id, JobState.TAKEN)

    # --- what the child says -----------------------------------------------------------------

    async def _event_loop(self) -> None:
        while True:
            child, event = await self._events.get()
            if child is not self.child:
                continue  # from a child we already replaced
            await self._handle(event)

    async def _handle(self, event: events.FromChild) -> None:
        match event:
            case events.Progress(job_id, update) if self._running(job_id):
                self._post(job_id, lambda: self.source.progress(job_id, update))
            case events.Chunk(job_id, chunk) if self._running(job_id):
                self._post(job_id, lambda: self.source.chunk(job_id, chunk))
            case events.Done(job_id, body, is_stream, refresh):
                self._finished(job_id, body, is_stream, refresh)
            case events.Concurrency(value):
                self.capacity = value
                self._slot.set()
            case events.Exited(code):
                await self._restart_child(_exit_message(code))

    def _running(self, job_id: str) -> bool:
        record = self.records.get(job_id)
        return record is not None and record.state is JobState.RUNNING

    def _finished(self, job_id: str, body: bytes | None, is_stream: bool, refresh: bool) -> None:
        record = self.records.get(job_id)
        sent_at = self._sent_at.pop(job_id, None)
        if record is None or record.state is not JobState.RUNNING:
            return  # stopped meanwhile: what the handler says of it is dropped
        if sent_at is not None:
            self.pace.ran(asyncio.get_running_loop().time() - sent_at)
        if body is None:  # cancelled inside the child: nothing to post
            self.records.forget(job_id)
        else:
            self.records.move(job_id, JobState.REPORTING)
            self._report_result(record, body, is_stream=is_stream)
        self._refresh = self._refresh or refresh
        if self._refresh and not self.records.running:  # taken jobs wait for the new child
            self._background.add(asyncio.create_task(self._restart_child("worker refresh")))
        self._hand_over()  # a prefetched job starts now
        self._slot.set()
        self._batch_wake.set()  # a batch may have ended: release the next one

    def _report_result(self, record: JobRecord, body: bytes, *, is_stream: bool) -> None:
        """Post the result, asking for the jobs the worker has room for (they come with the
        answer: no job-take round trip); the record is forgotten once the post is done."""
        take = self._room()
        self._inbound += take
        self._inbound_at = asyncio.get_running_loop().time()

        async def post() -> None:
            started = asyncio.get_running_loop().time()
            try:
                taken = await self.source.done(record.id, body, is_stream=is_stream, take=take)
            finally:
                self._inbound -= take
            # a post retried through an outage says nothing of the usual round trip
            self.pace.posted(min(asyncio.get_running_loop().time() - started, 1.0))
            if self.records.get(record.id) is record:
                self.records.forget(record.id)
            for job in taken:
                self.records.add(job)
            self._hand_over()
            self._slot.set()

        self._post(record.id, post)

    def _room(self) -> int:
        """Jobs to ask for with a result: room left once in-flight asks are answered."""
        if self._stopping.is_set() or self._refresh or self.child is None:
            return 0
        return max(0, self._target() - self.records.slots_used - self._inbound)

    def _post(self, job_id: str, send: Post) -> None:
        """Send in the background, after the job's earlier posts."""
        previous = self._posts.get(job_id)

        async def chained() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await send()

        task = asyncio.create_task(chained())
        self._posts[job_id] = task
        task.add_done_callback(
            lambda t: self._posts.pop(job_id, None) if self._posts.get(job_id) is t else None
        )

    # --- pings and stops ---------------------------------------------------------------------

    async def _ping_loop(self) -> None:
        while True:
            try:
                await self.source.ping(self.records.ids(), gpu=self.gpu)
            except errors.AnypodError as exc:
                log.warning("ping failed: %s", exc)
            await asyncio.sleep(self.opts.ping_interval)

    async def _stop_loop(self) -> None:
        while True:
            try:
                stops = await self.source.stops()
            except errors.AnypodError as exc:
                log.debug("job-stop poll failed: %s", exc)
                await asyncio.sleep(1)
                continue
            for job_id in stops:
                await self._stop_job(job_id)

    async def _stop_job(self, job_id: str) -> None:
        record = self.records.get(job_id)
        if record is None or record.state is JobState.REPORTING:
            return
        log.info("stopping job %s (cancelled or timed out on the server)", job_id)
        if record.state is not JobState.RUNNING:  # it never reached the handler
            self._forget(record)
            if self.buckets is not None:
                self.buckets.discard(job_id)
            return
        if record.batch:  # the batch runs on; stop it once none of its jobs is wanted
            self._forget(record)
            if not any(i in self.records for i in record.batch):
                await self._restart_child(f"handler process restarted to stop batch of {job_id}")
            return
        if self.capacity > 1 and self._send(events.CancelJob(job_id)):
            await asyncio.sleep(self.opts.stop_grace)
            if self.records.get(job_id) is not record or record.state is not JobState.RUNNING:
                return  # the handler let it go, or finished it meanwhile
        self._forget(record)  # one job at a time, or it ignored the cancel (blocking code)
        await self._restart_child(f"handler process restarted to stop job {job_id}")

    def _forget(self, record: JobRecord) -> None:
        if self.records.get(record.id) is record:
            self.records.forget(record.id)
        self._sent_at.pop(record.id, None)
        self._slot.set()


def _exit_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"handler process was killed by {name}{hint} while running this job"
    return f"handler process exited with code {code} while running this job"


async def serve(options: WorkerOptions) -> None:
    """Run a worker against its servers until SIGINT or SIGTERM."""
    source = HttpJobSource(
        options.servers,
        endpoint=options.endpoint,
        worker_id=options.worker_id,
        token=options.token,
        retry_for=options.result_retry_for,
    )
    worker = Worker(options, source)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.run()
    if worker.fatal is not None:
        raise worker.fatal
