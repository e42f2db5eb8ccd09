"""The use cases, shared by every store, every wire format and every API replica.

Client side: submit, wait, status, stream, cancel, retry, purge, health. Worker side: take,
report, stream chunk, ping, stop signals. Sweeping: timeouts, TTLs, lapsed leases, retention.

It takes and returns domain records (:mod:`anypod.jobs`); wire formats live in
:mod:`anypod.protocols`. Every move of a job is decided in :mod:`anypod.jobs` and persisted by
the store. Long-polls wait on the :class:`notifier.Notifier`; nothing here polls on a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from anypod import errors, jobs, keys, notifier, types
from anypod.access import EVERYONE, Credentials, Viewer
from anypod.audit import AuditTrail
from anypod.endpoints import Endpoint
from anypod.limits import Limiter
from anypod.presence import MAX_WORKERS_NOTED, Presence
from anypod.store import Counts, Store, WorkerInfo
from anypod.usage import UsageMeter

log = logging.getLogger(__name__)
S = jobs.JobStatus


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
    """Windows and hold times, in seconds unless named ``_ms``."""

    run_retention_ms: int = 1_800_000
    sync_retention_ms: int = 60_000
    lease: float = 30.0
    take_hold: float = 30.0  # how long job-take and job-stop are held when there is nothing
    ping_interval: float = 10.0
    runsync_wait_ms: int = 90_000
    max_wait_ms: int = 300_000
    counts_cache: float = 1.0  # /health job counts scan the table: reuse them this long


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndpointHealth:
    counts: Counts
    idle_workers: int
    running_workers: int
    unhealthy_workers: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerHealth:
    store: bool  # the store answered
    workers: list[WorkerInfo]  # seen in the last three ping intervals


async def _first(wait: Coroutine[Any, Any, object], gone: asyncio.Event | None) -> None:
    """Await ``wait``, or stop early once ``gone`` is set."""
    if gone is None:
        await wait
        return
    waiter, hangup = asyncio.ensure_future(wait), asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait((waiter, hangup), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        hangup.cancel()


def new_job_id(sync: bool) -> str:
    return f"sync-{uuid.uuid4()}" if sync else str(uuid.uuid4())


class JobService:
    def __init__(
        self,
        store: Store,
        endpoints: Mapping[str, Endpoint],
        *,
        notify: notifier.Notifier | None = None,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.time,
        new_id: Callable[[bool], str] = new_job_id,
        credentials: Credentials | None = None,
        audit_retention_days: float = 90.0,
        auth_failures_per_minute: int = 30,
    ) -> None:
        self.store = store
        self.credentials = credentials or Credentials(store, clock=clock)
        self.usage = UsageMeter(store, self.credentials.tenant_of, clock=clock)
        self.limiter = Limiter(store, self.usage, clock=clock)
        self.audit = AuditTrail(
            store,
            clock=clock,
            retention_days=audit_retention_days,
            failures_allowed=auth_failures_per_minute,
        )
        self.endpoints = dict(endpoints)
        self.notifier = notify or notifier.Notifier()
        self.timing = timing
        self.clock = clock
        self.new_id = new_id
        self._stops: dict[tuple[str, str], set[str]] = {}  # (endpoint, worker) → job ids
        self._counts: dict[tuple[str, str | None], tuple[float, Counts]] = {}
        self._presence = Presence()

    def endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            raise errors.EndpointNotFound(f"no endpoint named {errors.shown(name)}") from None

    # --- client side -------------------------------------------------------------------------

    async def submit(
        self,
        endpoint: str,
        submission: jobs.Submission,
        *,
        sync: bool = False,
        key: keys.ApiKey | None = None,
        job_id: str | None = None,
    ) -> jobs.Job:
        ep = self.endpoint(endpoint)
        new = jobs.NewJob(
            id=job_id or self.new_id(sync),
            endpoint=endpoint,
            input=submission.input,
            policy=ep.defaults.policy(submission),
            webhook=submission.webhook,
            s3_config=submission.s3_config,
            owner=None if key is None else key.id,
            retention_ms=self.timing.sync_retention_ms if sync else self.timing.run_retention_ms,
            max_attempts=ep.defaults.max_attempts,
            created_at=self.clock(),
        )
        if key is None or key.limits == keys.NO_LIMITS:
            job = await self.store.submit(new)
        else:
            job = await self.limiter.submit(new, key)
        self.usage.submitted(new.owner, endpoint, len(new.input))
        self.notifier.notify(notifier.queue_topic(endpoint))
        return job

    async def submit_and_wait(
        self,
        endpoint: str,
        submission: jobs.Submission,
        timeout: float,
        key: keys.ApiKey | None = None,
    ) -> jobs.Job:
        """Submit and hold until done or ``timeout``: listening starts before the submit, so
        the common case needs no read of the job at all."""
        loop = asyncio.get_running_loop()
        started, job_id = loop.time(), self.new_id(True)
        with self.notifier.listen(notifier.job_topic(job_id)) as listener:
            job = await self.submit(endpoint, submission, sync=True, key=key, job_id=job_id)
            await listener.wait(timeout)
            if isinstance(listener.payload, jobs.Job) and listener.payload.terminal:
                return listener.payload
        return await self.wait_terminal(job, timeout - (loop.time() - started))

    async def get(self, endpoint: str, job_id: str, viewer: Viewer = EVERYONE) -> jobs.Job:
        """The job, if it is on that endpoint and the viewer's tenant owns it (else 404: the
        id of another tenant's job is not even confirmed to exist)."""
        self.endpoint(endpoint)
        job = await self.store.get(job_id)
        if (
            job is None
            or job.endpoint != endpoint
            or (viewer.tenant is not None and await self._tenant(job) != viewer.tenant)
        ):
            raise errors.JobNotFound(f"no job {errors.shown(job_id)} on endpoint {endpoint!r}")
        return job

    async def _tenant(self, job: jobs.Job) -> str | None:
        return await self.credentials.tenant_of(job.owner)

    def wait_seconds(self, wait_ms: int | None, default_ms: int) -> float:
        value = default_ms if wait_ms is None else wait_ms
        return max(0, min(value, self.timing.max_wait_ms)) / 1000

    async def wait_terminal(self, job: jobs.Job, timeout: float) -> jobs.Job:
        """Hold until ``job`` is terminal or ``timeout`` seconds pass; return the latest state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not job.terminal:
            with self.notifier.listen(notifier.job_topic(job.id)) as listener:
                job = await self.get(job.endpoint, job.id)
                remaining = deadline - loop.time()
                if job.terminal or remaining <= 0 or self.notifier.closed:
                    break
                await listener.wait(remaining)
                if isinstance(listener.payload, jobs.Job) and listener.payload.terminal:
                    return listener.payload  # the finished job, handed over in process
        return job

    async def stream(
        self, endpoint: str, job_id: str, timeout: float, viewer: Viewer = EVERYONE
    ) -> tuple[jobs.Job, list[types.RawJSON]]:
        """Drain the job's new stream chunks, holding up to ``timeout`` for the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self.notifier.listen(notifier.job_topic(job_id)) as listener:
                job = await self.get(endpoint, job_id, viewer)
                chunks = await self.store.drain_stream(job_id)
                remaining = deadline - loop.time()
                if chunks or job.terminal or remaining <= 0 or self.notifier.closed:
                    return job, chunks
                await listener.wait(remaining)

    async def cancel(self, endpoint: str, job_id: str, viewer: Viewer = EVERYONE) -> jobs.Job:
        await self.get(endpoint, job_id, viewer)  # the job exists, on this endpoint, is theirs
        job = await self.store.end(job_id, jobs.cancel(self.clock()))
        if job is None:  # already finished: cancelling changes nothing
            return await self.get(endpoint, job_id)
        self._ended(job)
        return job

    async def retry(self, endpoint: str, job_id: str, viewer: Viewer = EVERYONE) -> jobs.Job:
        """Run a FAILED or TIMED_OUT job again: a new run for its owner's limits and usage."""
        before = await self.get(endpoint, job_id, viewer)
        owner = await self.credentials.key_of(before.owner)
        if owner is not None:
            await self.limiter.admit_retry(owner)
        job = await self.store.retry(job_id, jobs.retry(self.clock()))
        if job is None:
            if owner is not None:
                self.limiter.give_back(owner)
            raise errors.Conflict(
                f"job {job_id} is {before.status.value}; "
                "only FAILED or TIMED_OUT jobs can be retried"
            )
        self.usage.submitted(job.owner, endpoint, len(job.input))
        self.notifier.notify(notifier.queue_topic(endpoint))
        return job

    async def purge_queue(self, endpoint: str, viewer: Viewer = EVERYONE) -> int:
        """Cancel the endpoint's queued jobs (the viewer's tenant's only, unless it sees all)."""
        self.endpoint(endpoint)
        owners = await self._owners(viewer)
        self._counts.clear()
        purged = await self.store.purge_queue(endpoint, jobs.cancel(self.clock()), owners)
        self.usage.cancelled(purged, endpoint)
        return len(purged)

    async def _owners(self, viewer: Viewer) -> list[str] | None:
        return None if viewer.tenant is None else await self.credentials.owners(viewer.tenant)

    async def counts(self, endpoint: str, viewer: Viewer = EVERYONE) -> Counts:
        """Jobs by status (the viewer's tenant's), at most ``timing.counts_cache`` seconds
        old: counting is a scan (210 ms at a million queued jobs on PostgreSQL), and health is
        polled."""
        now = self.clock()
        cached = self._counts.get((endpoint, viewer.tenant))
        if cached is not None and now - cached[0] < self.timing.counts_cache:
            return cached[1]
        counts = await self.store.counts(endpoint, await self._owners(viewer))
        if len(self._counts) > 10_000:
            self._counts.clear()
        self._counts[(endpoint, viewer.tenant)] = (now, counts)
        return counts

    async def health(self, endpoint: str, viewer: Viewer = EVERYONE) -> EndpointHealth:
        """Workers now, not as of their last ping: running ones hold a job in the store; idle
        ones pinged or asked for work lately, and have not hung up since (on this replica)."""
        self.endpoint(endpoint)
        counts = await self.counts(endpoint, viewer)
        since = self._seen_since()
        seen = await self.store.workers(endpoint, since)
        running = await self.store.holders(endpoint)
        live = self._presence.live(endpoint, ((w.id, w.last_seen) for w in seen), since)
        unhealthy = {w.id for w in seen if w.unhealthy} & live - running
        return EndpointHealth(
            counts=counts,
            idle_workers=len(live - running - unhealthy),
            running_workers=len(running),
            unhealthy_workers=len(unhealthy),
        )

    async def server_health(self) -> ServerHealth:
        try:
            await self.store.ping()
            workers = await self.store.workers(None, self._seen_since())
        except errors.StoreUnavailable:
            return ServerHealth(store=False, workers=[])
        return ServerHealth(store=True, workers=workers)

    def _seen_since(self) -> float:
        return self.clock() - 3 * self.timing.ping_interval

    # --- worker side -------------------------------------------------------------------------

    async def authenticate_worker(self, endpoint: str, token: str | None) -> None:
        self.endpoint(endpoint)
        if not token:
            raise errors.Unauthorized("worker token required (Authorization header)")
        if await self.credentials.worker_endpoint(token) != endpoint:
            raise errors.Unauthorized(f"invalid worker token for endpoint {endpoint!r}")

    async def mint_worker_token(self, endpoint: str, name: str = "") -> str:
        """A durable worker token for ``endpoint`` (``anypod worker-env``, ``anypod tokens``)."""
        self.endpoint(endpoint)
        return (await self.credentials.create_token(endpoint, name)).secret

    def session_worker_token(self, endpoint: str) -> str:
        """A worker token that only this process knows and that dies with it: for the workers
        ``anypod serve`` starts on loopback."""
        self.endpoint(endpoint)
        return self.credentials.session_token(endpoint)

    async def take(
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        *,
        gone: asyncio.Event | None = None,
        hold: bool = True,
    ) -> list[jobs.Job]:
        """Claim up to ``limit`` jobs, holding the request up to ``timing.take_hold`` for one
        (with ``hold``; else answering at once).

        ``gone`` is set when the worker hangs up: a worker that is gone claims nothing, and a
        claim made just as it went is released at once (it never got the jobs)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timing.take_hold if hold else 0.0)
        self._presence.took(endpoint, worker_id, self.clock(), self._seen_since())
        while True:
            with self.notifier.listen(notifier.queue_topic(endpoint)) as listener:
                if gone is not None and gone.is_set():
                    self._presence.hung_up(endpoint, worker_id, self.clock(), self._seen_since())
                    return []
                claim = jobs.claim(worker_id, self.clock(), self.timing.lease)
                taken = await self.store.claim(endpoint, limit, claim)
                if taken and gone is not None:
                    return await self._unless_gone(endpoint, worker_id, taken, gone)
                remaining = deadline - loop.time()
                if taken or remaining <= 0 or self.notifier.closed:
                    return taken
                await _first(listener.wait(remaining), gone)

    async def _unless_gone(
        self, endpoint: str, worker_id: str, taken: list[jobs.Job], gone: asyncio.Event
    ) -> list[jobs.Job]:
        for _ in range(2):  # let a hang-up that has arrived be noticed before replying
            await asyncio.sleep(0)
        if not gone.is_set():
            return taken
        self._presence.hung_up(endpoint, worker_id, self.clock(), self._seen_since())
        holder = jobs.Holder(worker_id=worker_id, endpoint=endpoint)
        released = await self.release(holder, [j.id for j in taken])
        log.info("worker %r hung up before its jobs were sent; released %s", worker_id, released)
        return []

    async def report(self, holder: jobs.Holder, job_id: str, report: jobs.Report) -> None:
        """A worker's progress update or result on a job it holds. A repeated or late result
        for a job this worker held, which has ended since, is dropped; a report on a job the
        worker does not hold is refused (:meth:`_refused`), nothing changed."""
        if isinstance(report, jobs.Progress):
            if await self.store.record_progress(job_id, holder, report.output):
                self.notifier.notify(notifier.job_topic(job_id))
                return
            return await self._refused(holder, job_id, "progress")
        job = await self.store.end(job_id, jobs.finish(report, holder, self.clock()))
        if job is None:
            return await self._refused(holder, job_id, "result")
        self._notify_end(job)

    async def report_many(
        self, holder: jobs.Holder, reports: Sequence[tuple[str, jobs.Report]]
    ) -> list[errors.AnypodError | None]:
        """Several reports of one worker, each standing alone: the refusal :meth:`report`
        would raise for each (None: applied, or a harmless repeat). Results end in one
        store call."""
        now = self.clock()
        results = [
            (i, job_id, r) for i, (job_id, r) in enumerate(reports) if isinstance(r, jobs.Result)
        ]
        ended = await self.store.end_many([(j, jobs.finish(r, holder, now)) for _, j, r in results])
        outcomes: list[errors.AnypodError | None] = [None] * len(reports)
        for (i, job_id, _), job in zip(results, ended, strict=True):
            if job is not None:
                self._notify_end(job)
                continue
            try:
                await self._refused(holder, job_id, "result")
            except (errors.NotFound, errors.Conflict) as exc:
                outcomes[i] = exc
        for i, (job_id, report) in enumerate(reports):
            if isinstance(report, jobs.Progress):
                try:
                    await self.report(holder, job_id, report)
                except (errors.NotFound, errors.Conflict) as exc:
                    outcomes[i] = exc
        return outcomes

    async def release(self, holder: jobs.Holder, job_ids: Sequence[str]) -> list[str]:
        """Hand back jobs ``holder`` took but will not run: queued again, attempt undone."""
        released = await self.store.release(job_ids, jobs.release(holder))
        if released:
            self.notifier.notify(notifier.queue_topic(holder.endpoint))
        return released

    async def stream_chunk(self, holder: jobs.Holder, job_id: str, chunk: types.RawJSON) -> None:
        if await self.store.append_stream(job_id, holder, chunk):
            self.notifier.notify(notifier.job_topic(job_id))
            return
        await self._refused(holder, job_id, "stream chunk")

    async def _refused(self, holder: jobs.Holder, job_id: str, what: str) -> None:
        """Why a report did not apply: 404 for a job not on the holder's endpoint, nothing (a
        late or repeated report) for a job this worker held that has ended, else 409."""
        job = await self.store.get(job_id)
        if job is None or job.endpoint != holder.endpoint:
            raise errors.JobNotFound(f"no job {job_id!r} on endpoint {holder.endpoint!r}")
        if job.terminal and job.worker_id == holder.worker_id:
            log.info("dropped a late %s from %r for ended job %r", what, holder.worker_id, job_id)
            return
        raise errors.Conflict(
            f"job {job_id} is {job.status.value} and not held by worker {holder.worker_id!r};"
            f" the {what} was refused"
        )

    async def ping(self, worker: WorkerInfo) -> None:
        lease_until = self.clock() + self.timing.lease
        stale = await self.store.renew_leases(worker, lease_until)
        if stale:
            self._request_stop(worker.endpoint, worker.id, stale)

    async def stop_signals(self, endpoint: str, worker_id: str) -> list[str]:
        """Held (up to ``timing.take_hold``) until some of this worker's jobs must stop. Stops
        decided on other replicas arrive as the notification's payload (comma-separated ids)."""
        key = (endpoint, worker_id)
        with self.notifier.listen(notifier.stop_topic(endpoint, worker_id)) as listener:
            if not self._stops.get(key):
                await listener.wait(self.timing.take_hold)
            for payload in listener.payloads:
                if isinstance(payload, str):
                    self._stops.setdefault(key, set()).update(payload.split(","))
        return sorted(self._stops.pop(key, ()))

    # --- shared bookkeeping ------------------------------------------------------------------

    def _request_stop(self, endpoint: str, worker_id: str, job_ids: list[str]) -> None:
        if len(self._stops) >= MAX_WORKERS_NOTED:  # workers that never poll job-stop
            self._stops.clear()  # their jobs' leases still lapse; stops reach pollers anew
        self._stops.setdefault((endpoint, worker_id), set()).update(job_ids)
        self.notifier.notify(notifier.stop_topic(endpoint, worker_id), ",".join(job_ids))

    def _notify_end(self, job: jobs.Job) -> None:
        self.usage.ended(job)
        self.notifier.notify(notifier.job_topic(job.id), job)
        if job.webhook:
            self.notifier.notify(notifier.WEBHOOKS)

    def _ended(self, after: jobs.Job) -> None:
        """A job was ended by the server (cancel, timeout): wake waiters, stop its worker (the
        one the ended row names: a claim may have landed since the job was read)."""
        self._notify_end(after)
        if after.worker_id:
            self._request_stop(after.endpoint, after.worker_id, [after.id])

    async def sweep(self, limit: int = 500) -> int:
        """Apply timeouts, TTLs and lapsed leases; purge expired results. Returns jobs moved."""
        now = self.clock()
        moved = 0
        for job in await self.store.overdue(now, limit):
            applied = await self.store.apply_overdue(job.id, now)
            if applied is None:
                continue
            moved += 1
            self._swept(*applied)
        await self.store.purge_finished(now)
        return moved

    def _swept(self, before: jobs.Job, after: jobs.Job) -> None:
        if after.status is S.IN_QUEUE:
            log.warning("job %r: worker %r lapsed; re-queued", before.id, before.worker_id)
            self.notifier.notify(notifier.queue_topic(before.endpoint))
            if before.worker_id:
                self._request_stop(before.endpoint, before.worker_id, [before.id])
        else:
            log.warning("job %r: %s", before.id, (after.error or b"").decode(errors="replace"))
            self._ended(after)
