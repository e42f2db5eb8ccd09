"""The worker's jobs: one :class:`JobRecord` per job it holds, in one of four states.

    TAKEN ──▶ RUNNING ──▶ REPORTING ──▶ (forgotten once its result is posted)
      └──▶ BUFFERED ──┘       (a batch handler's job waits in a bucket first)

A buffered job goes back to TAKEN when the handler process its batch was about to go to is
gone; it waits for the next one. A job that must stop (cancelled, timed out on the server) is
forgotten from any state but REPORTING; whatever its handler still says about it is dropped.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator

from anypod import types


class JobState(enum.Enum):
    TAKEN = "taken"  #: received from the server; waits for a handler process
    BUFFERED = "buffered"  #: waits in a batch bucket
    RUNNING = "running"  #: handed to the handler process
    REPORTING = "reporting"  #: finished; its result is being posted


MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.TAKEN: frozenset({JobState.RUNNING, JobState.BUFFERED}),
    JobState.BUFFERED: frozenset({JobState.RUNNING, JobState.TAKEN}),  # TAKEN: child died
    JobState.RUNNING: frozenset({JobState.REPORTING}),
    JobState.REPORTING: frozenset(),
}
HOLDING_A_SLOT = frozenset({JobState.TAKEN, JobState.BUFFERED, JobState.RUNNING})


@dataclasses.dataclass
class JobRecord:
    job: types.JSONDict
    state: JobState = JobState.TAKEN
    batch: frozenset[str] = frozenset()  # the ids of the batch it runs in, if any

    @property
    def id(self) -> str:
        job_id: str = self.job["id"]
        return job_id


class Records:
    def __init__(self) -> None:
        self._by_id: dict[str, JobRecord] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._by_id

    def get(self, job_id: str) -> JobRecord | None:
        return self._by_id.get(job_id)

    def add(self, job: types.JSONDict) -> JobRecord:
        record = JobRecord(job)
        self._by_id[record.id] = record
        return record

    def move(self, job_id: str, state: JobState, *, batch: frozenset[str] = frozenset()) -> None:
        record = self._by_id[job_id]
        if state not in MOVES[record.state]:
            raise ValueError(f"job {job_id}: {record.state.value} -> {state.value} is not a move")
        record.state, record.batch = state, batch

    def forget(self, job_id: str) -> JobRecord | None:
        return self._by_id.pop(job_id, None)

    def in_state(self, *states: JobState) -> Iterator[JobRecord]:
        return (r for r in list(self._by_id.values()) if r.state in states)

    def ids(self) -> list[str]:
        return list(self._by_id)

    @property
    def slots_used(self) -> int:
        """Jobs taken and not finished: what counts against the worker's capacity."""
        return sum(1 for r in self._by_id.values() if r.state in HOLDING_A_SLOT)

    @property
    def running(self) -> int:
        """Jobs the handler process has (or has been sent)."""
        return sum(1 for r in self._by_id.values() if r.state is JobState.RUNNING)

    def running_batches(self) -> int:
        return len({r.batch for r in self.in_state(JobState.RUNNING) if r.batch})
