from __future__ import annotations

import dataclasses

import pytest

from anypod import jobs

S = jobs.JobStatus
T0 = 1_000.0


def job(**changes: object) -> jobs.Job:
    base = jobs.Job(
        id="j",
        endpoint="e",
        status=S.IN_PROGRESS,
        input=b"{}",
        created_at=T0,
        expires_at=T0 + 100,
        started_at=T0 + 1,
        lease_expires_at=T0 + 31,
        policy=jobs.Policy(execution_timeout_ms=20_000, ttl_ms=100_000),
        attempts=1,
        max_attempts=2,
        worker_id="w",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_terminal_states_have_no_way_out_but_retry() -> None:
    assert jobs.TRANSITIONS[S.COMPLETED] == frozenset()
    assert jobs.TRANSITIONS[S.CANCELLED] == frozenset()
    assert jobs.TRANSITIONS[S.FAILED] == {S.IN_QUEUE}
    assert jobs.can_transition(S.IN_PROGRESS, S.IN_QUEUE)
    assert not jobs.can_transition(S.COMPLETED, S.IN_PROGRESS)
    assert jobs.TERMINAL == {S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED}


def test_timings_follow_runpod() -> None:
    j = job(finished_at=T0 + 4.5)
    assert j.delay_ms(T0 + 10) == 1000 and j.execution_ms(T0 + 10) == 3500
    queued = job(status=S.IN_QUEUE, started_at=None)
    assert queued.execution_ms(T0 + 3) is None and queued.delay_ms(T0 + 3) == 3000


@pytest.mark.parametrize(
    ("changes", "now", "expected"),
    [
        ({}, T0 + 10, None),
        ({}, T0 + 22, S.TIMED_OUT),  # execution timeout (started + 20 s)
        ({"policy": jobs.Policy(execution_timeout_ms=900_000)}, T0 + 32, S.IN_QUEUE),  # lease
        ({"policy": jobs.Policy(execution_timeout_ms=900_000), "attempts": 2}, T0 + 32, S.FAILED),
        (
            {"status": S.IN_QUEUE, "started_at": None, "lease_expires_at": None},
            T0 + 100,
            S.TIMED_OUT,
        ),  # TTL
        ({"status": S.COMPLETED}, T0 + 1000, None),
    ],
)
def test_overdue_outcome(changes: dict[str, object], now: float, expected: S | None) -> None:
    move = jobs.overdue(job(**changes), now)
    after = jobs.apply(job(**changes), move) if move else None
    assert (after.status if after else None) == expected


def test_give_up_message_says_why() -> None:
    move = jobs.lapsed_lease(job(attempts=2), T0 + 40)
    assert isinstance(move, jobs.End) and move.status is S.FAILED
    assert move.error is not None and b"w stopped responding" in move.error
    assert b"attempt 2 of 2" in move.error
