"""The in-memory store: every move applied with :func:`jobs.apply`, nothing kept on disk.

For unit tests of the service and the worker, and for your own tests: ``memory://`` in
:func:`store.from_url`. It passes the same contract suite as the SQL stores, so it is also the
plainest reading of what they do. Each method runs without awaiting, so each is atomic.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence

from anypod import errors, jobs, types
from anypod.store import base
from anypod.store.memory_tenancy import MemoryTenancy

S = jobs.JobStatus


@dataclasses.dataclass
class _Entry:
    job: jobs.Job
    seq: int
    webhook_next_at: float | None = None


class MemoryStore(MemoryTenancy, base.Store):
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._seq = itertools.count(1)
        self._chunks: dict[str, list[types.RawJSON]] = {}
        self._workers: dict[tuple[str, str], base.WorkerInfo] = {}  # (endpoint, id) → ping
        self._init_tenancy()
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if not self._open:
            raise errors.StoreUnavailable("the in-memory store is closed")

    def _jobs(self, keep: Callable[[jobs.Job], bool]) -> Iterator[_Entry]:
        self._check_open()
        return (e for e in self._entries.values() if keep(e.job))

    def _move(self, entry: _Entry, move: jobs.Move) -> jobs.Job | None:
        after = jobs.apply(entry.job, move)
        if after is not None:
            entry.job = after
            if isinstance(move, jobs.End) and after.webhook is not None:
                entry.webhook_next_at = move.finished_at
        return after

    # --- client side -------------------------------------------------------------------------

    async def submit(self, new: jobs.NewJob) -> jobs.Job:
        return (await self.submit_many([new]))[0]

    async def submit_many(self, new: Sequence[jobs.NewJob]) -> list[jobs.Job]:
        self._check_open()
        ids = [n.id for n in new]
        taken = [i for i in ids if i in self._entries] or [i for i in ids if ids.count(i) > 1]
        if taken:
            raise errors.Conflict(f"job id {taken[0]} already exists")
        for n in new:
            self._entries[n.id] = _Entry(n.queued(), next(self._seq))
        return [self._entries[i].job for i in ids]

    async def get(self, job_id: str) -> jobs.Job | None:
        self._check_open()
        entry = self._entries.get(job_id)
        return None if entry is None else entry.job

    async def list_jobs(self, query: base.JobQuery) -> list[jobs.Job]:
        def keep(job: jobs.Job) -> bool:
            return (
                query.endpoint in (None, job.endpoint)
                and query.owner in (None, job.owner)
                and query.status in (None, job.status)
            )

        before = query.before_seq
        found = [e for e in self._jobs(keep) if before is None or e.seq < before]
        found.sort(key=lambda e: -e.seq)
        return [e.job for e in found[: query.limit]]

    async def counts(self, endpoint: str, owners: Sequence[str] | None = None) -> base.Counts:
        rows: dict[str, list[int]] = {}
        for entry in self._jobs(
            lambda j: j.endpoint == endpoint and (owners is None or j.owner in owners)
        ):
            row = rows.setdefault(entry.job.status, [0, 0])
            row[0] += 1
            row[1] += entry.job.attempts > 1 or entry.job.retries > 0
        return base.Counts.from_rows((s, n, r) for s, (n, r) in rows.items())

    async def end(self, job_id: str, end: jobs.End) -> jobs.Job | None:
        self._check_open()
        entry = self._entries.get(job_id)
        return None if entry is None else self._move(entry, end)

    async def retry(self, job_id: str, retry: jobs.Retry) -> jobs.Job | None:
        self._check_open()
        entry = self._entries.get(job_id)
        after = None if entry is None else self._move(entry, retry)
        if entry is not None and after is not None:
            entry.webhook_next_at = None
            self._chunks.pop(job_id, None)
        return after

    async def purge_queue(
        self, endpoint: str, end: jobs.End, owners: Sequence[str] | None = None
    ) -> list[str | None]:
        queued = list(
            self._jobs(
                lambda j: (
                    j.endpoint == endpoint
                    and j.status is S.IN_QUEUE
                    and (owners is None or j.owner in owners)
                )
            )
        )
        return [entry.job.owner for entry in queued if self._move(entry, end)]

    # --- worker side -------------------------------------------------------------------------

    async def claim(self, endpoint: str, limit: int, claim: jobs.Claim) -> list[jobs.Job]:
        def keep(job: jobs.Job) -> bool:
            return (
                job.endpoint == endpoint
                and job.status is S.IN_QUEUE
                and job.expires_at > claim.started_at
            )

        queued = sorted(self._jobs(keep), key=lambda e: (-e.job.priority, e.seq))
        return [job for e in queued[:limit] if (job := self._move(e, claim))]

    async def release(self, job_ids: Sequence[str], release: jobs.Release) -> list[str]:
        self._check_open()
        entries = [e for j in job_ids if (e := self._entries.get(j)) is not None]
        return [e.job.id for e in entries if self._move(e, release)]

    async def record_progress(
        self, job_id: str, holder: jobs.Holder, output: types.RawJSON
    ) -> bool:
        self._check_open()
        entry = self._entries.get(job_id)
        if entry is None or not holder.holds(entry.job):
            return False
        entry.job = dataclasses.replace(entry.job, output=output)
        return True

    async def append_stream(self, job_id: str, holder: jobs.Holder, output: types.RawJSON) -> bool:
        self._check_open()
        entry = self._entries.get(job_id)
        if entry is None or not holder.holds(entry.job):
            return False
        self._chunks.setdefault(job_id, []).append(output)
        return True

    async def drain_stream(self, job_id: str) -> list[types.RawJSON]:
        self._check_open()
        return self._chunks.pop(job_id, [])

    async def renew_leases(self, worker: base.WorkerInfo, lease_until: float) -> list[str]:
        self._check_open()
        self._workers[(worker.endpoint, worker.id)] = worker
        holder = jobs.Holder(worker_id=worker.id, endpoint=worker.endpoint)
        stale = []
        for job_id in worker.job_ids:
            entry = self._entries.get(job_id)
            if entry is None or not holder.holds(entry.job):
                stale.append(job_id)
                continue
            entry.job = dataclasses.replace(entry.job, lease_expires_at=lease_until)
        return stale

    async def holders(self, endpoint: str) -> set[str]:
        self._check_open()
        running = self._jobs(lambda j: j.endpoint == endpoint and j.status is S.IN_PROGRESS)
        return {e.job.worker_id for e in running if e.job.worker_id is not None}

    async def workers(self, endpoint: str | None, seen_since: float) -> list[base.WorkerInfo]:
        self._check_open()
        seen = [
            w
            for w in self._workers.values()
            if w.last_seen >= seen_since and endpoint in (None, w.endpoint)
        ]
        return sorted(seen, key=lambda w: (w.id, w.endpoint))

    # --- sweeping ----------------------------------------------------------------------------

    async def overdue(self, now: float, limit: int) -> list[jobs.Job]:
        def due(job: jobs.Job) -> bool:
            if job.status not in jobs.ACTIVE:
                return False
            lease, deadline = job.lease_expires_at, job.deadline_at
            running = job.status is S.IN_PROGRESS
            return (
                job.expires_at <= now
                or (running and lease is not None and lease <= now)
                or (running and deadline is not None and deadline <= now)
            )

        return [e.job for e in itertools.islice(self._jobs(due), limit)]

    async def apply_overdue(self, job_id: str, now: float) -> tuple[jobs.Job, jobs.Job] | None:
        self._check_open()
        entry = self._entries.get(job_id)
        move = None if entry is None else jobs.overdue(entry.job, now)
        if entry is None or move is None:
            return None
        before = entry.job
        after = self._move(entry, move)
        return None if after is None else (before, after)

    async def purge_finished(self, now: float) -> int:
        def expired(job: jobs.Job) -> bool:
            purge_at = job.purge_at
            pending = job.webhook_state is jobs.WebhookState.PENDING
            return purge_at is not None and purge_at <= now and not pending

        gone = [e.job.id for e in self._jobs(expired)]
        for job_id in gone:
            del self._entries[job_id]
            self._chunks.pop(job_id, None)
        return len(gone)

    async def due_webhooks(self, now: float, limit: int, lease_until: float) -> list[jobs.Job]:
        self._check_open()

        def due(entry: _Entry) -> bool:
            pending = entry.job.webhook_state is jobs.WebhookState.PENDING
            return pending and entry.webhook_next_at is not None and entry.webhook_next_at <= now

        found = sorted(filter(due, self._entries.values()), key=lambda e: e.webhook_next_at or 0)
        for entry in found[:limit]:
            entry.webhook_next_at = lease_until
        return [e.job for e in found[:limit]]

    async def webhook_attempted(self, job_id: str, attempt: jobs.WebhookAttempt) -> None:
        self._check_open()
        entry = self._entries.get(job_id)
        if entry is None:
            return
        entry.job = dataclasses.replace(
            entry.job, webhook_state=attempt.state, webhook_attempts=entry.job.webhook_attempts + 1
        )
        entry.webhook_next_at = attempt.next_at

    def _owned(self, owner: str) -> list[jobs.Job]:
        return [e.job for e in self._jobs(lambda job: job.owner == owner)]
