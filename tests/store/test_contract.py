"""The store contract: every backend must pass all of it."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from anypod import errors, jobs
from anypod.store import JobQuery, Store, WorkerInfo

S = jobs.JobStatus
T0 = 1_800_000_000.0


def new_job(
    job_id: str,
    *,
    endpoint: str = "ep",
    low: bool = False,
    at: float = T0,
    ttl_ms: int = 60_000,
    timeout_ms: int = 30_000,
    webhook: str | None = None,
    max_attempts: int = 2,
) -> jobs.NewJob:
    return jobs.NewJob(
        id=job_id,
        endpoint=endpoint,
        input=orjson.dumps({"n": job_id}),
        created_at=at,
        policy=jobs.Policy(execution_timeout_ms=timeout_ms, ttl_ms=ttl_ms, low_priority=low),
        retention_ms=10_000,
        max_attempts=max_attempts,
        webhook=webhook,
    )


W = jobs.Holder(worker_id="w", endpoint="ep")  # the worker most tests claim with


def done(
    output: object = None, error: object = None, *, at: float, by: jobs.Holder = W
) -> jobs.End:
    result = jobs.Result(
        output=orjson.dumps(output) if output is not None else None,
        error=orjson.dumps(error) if error is not None else None,
    )
    return jobs.finish(result, by, at)


def take(worker: str, now: float, lease_until: float) -> jobs.Claim:
    return jobs.claim(worker, now, lease_until - now)


async def test_submit_then_get_round_trips(store: Store) -> None:
    submitted = await store.submit(new_job("a", webhook="http://h/x"))
    got = await store.get("a")
    assert got == submitted
    assert got.status is S.IN_QUEUE and orjson.loads(got.input) == {"n": "a"}
    assert got.expires_at == T0 + 60 and got.webhook == "http://h/x"
    assert await store.get("missing") is None


async def test_duplicate_id_is_a_conflict(store: Store) -> None:
    await store.submit(new_job("a"))
    with pytest.raises(errors.Conflict):
        await store.submit(new_job("a"))


async def test_claim_orders_by_priority_then_age_and_counts_attempts(store: Store) -> None:
    await store.submit(new_job("low", low=True, at=T0))
    await store.submit(new_job("old", at=T0 + 1))
    await store.submit(new_job("new", at=T0 + 2))
    await store.submit(new_job("other", endpoint="ep2"))
    first = await store.claim("ep", 2, take("w1", T0 + 3, T0 + 33))
    assert [j.id for j in first] == ["old", "new"]
    assert all(j.status is S.IN_PROGRESS and j.worker_id == "w1" and j.attempts == 1 for j in first)
    assert first[0].started_at == T0 + 3 and first[0].lease_expires_at == T0 + 33
    assert [j.id for j in await store.claim("ep", 5, take("w2", T0 + 3, T0 + 33))] == ["low"]
    assert await store.claim("ep", 5, take("w2", T0 + 3, T0 + 33)) == []


async def test_concurrent_claims_never_hand_out_a_job_twice(store: Store) -> None:
    for i in range(50):
        await store.submit(new_job(f"j{i}"))
    claims = (store.claim("ep", 7, take(f"w{i}", T0, T0 + 30)) for i in range(10))
    batches = await asyncio.gather(*claims)
    ids = [j.id for batch in batches for j in batch]
    assert sorted(ids) == sorted(f"j{i}" for i in range(50))


async def test_claim_skips_jobs_past_their_ttl(store: Store) -> None:
    await store.submit(new_job("stale", ttl_ms=10_000))
    assert await store.claim("ep", 1, take("w", T0 + 11, T0 + 40)) == []


async def test_finish_is_compare_and_set(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    ended = await store.end("a", done({"x": 1}, at=T0 + 2))
    assert ended is not None and ended.status is S.COMPLETED
    assert orjson.loads(ended.output or b"") == {"x": 1} and ended.finished_at == T0 + 2
    assert await store.end("a", done(error="late", at=T0 + 3)) is None
    assert (await store.get("a")).status is S.COMPLETED  # type: ignore[union-attr]


async def test_failed_result_keeps_error_exactly(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    err = '{"error_type": "<class \'ValueError\'>", "error_message": "boom"}'
    ended = await store.end("a", done(error=err, at=T0 + 1))
    assert ended is not None and ended.status is S.FAILED
    assert orjson.loads(ended.error or b"") == err


async def test_progress_only_while_in_progress(store: Store) -> None:
    await store.submit(new_job("a"))
    assert not await store.record_progress("a", W, b'"queued?"')
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    assert await store.record_progress("a", W, b'{"pct": 50}')
    assert (await store.get("a")).output == b'{"pct": 50}'  # type: ignore[union-attr]
    await store.end("a", done({"final": True}, at=T0 + 1))
    assert not await store.record_progress("a", W, b'"late progress"')
    assert orjson.loads((await store.get("a")).output or b"") == {"final": True}  # type: ignore[union-attr]


async def test_stream_chunks_drain_once_in_order(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    for i in range(3):
        assert await store.append_stream("a", W, orjson.dumps(i))
    assert await store.drain_stream("a") == [b"0", b"1", b"2"]
    assert await store.drain_stream("a") == []
    await store.append_stream("a", W, b"3")
    await store.end("a", done([0, 1, 2, 3], at=T0 + 1))
    assert await store.drain_stream("a") == [b"3"]
    assert not await store.append_stream("a", W, b"4")


async def test_cancel_queued_running_and_finished(store: Store) -> None:
    await store.submit(new_job("q"))
    await store.submit(new_job("r"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    running = await store.end("q", jobs.cancel(T0 + 1))
    assert running is not None and running.status is S.CANCELLED and running.worker_id == "w"
    queued = await store.end("r", jobs.cancel(T0 + 1))
    assert queued is not None and queued.status is S.CANCELLED
    assert await store.end("r", jobs.cancel(T0 + 2)) is None  # terminal: unchanged
    again = await store.get("r")
    assert again is not None and again.finished_at == T0 + 1
    assert await store.end("nope", jobs.cancel(T0)) is None


async def test_retry_requeues_failed_with_same_id_and_input(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    await store.end("a", done(error="x", at=T0 + 1))
    await store.append_stream("a", W, b"0")
    retried = await store.retry("a", jobs.retry(T0 + 100))
    assert retried is not None and retried.status is S.IN_QUEUE
    assert retried.output is None and retried.error is None and retried.attempts == 0
    assert retried.expires_at == T0 + 100 + 60 and orjson.loads(retried.input) == {"n": "a"}
    assert await store.drain_stream("a") == []  # the earlier run's chunks are gone
    await store.submit(new_job("ok", at=T0 + 99))
    claimed = await store.claim("ep", 5, take("w", T0 + 100, T0 + 130))
    assert {j.id for j in claimed} == {"a", "ok"}
    await store.end("ok", done(1, at=T0 + 101))
    assert await store.retry("ok", jobs.retry(T0 + 102)) is None
    unchanged = await store.get("ok")
    assert unchanged is not None and unchanged.status is S.COMPLETED


async def test_purge_queue_cancels_only_queued(store: Store) -> None:
    for i in range(3):
        await store.submit(new_job(f"q{i}"))
    await store.submit(new_job("other", endpoint="ep2"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    assert len(await store.purge_queue("ep", jobs.cancel(T0 + 1))) == 2
    counts = await store.counts("ep")
    assert (counts.in_progress, counts.cancelled, counts.in_queue) == (1, 2, 0)
    assert (await store.counts("ep2")).in_queue == 1


async def test_lapsed_lease_requeues_then_fails_when_attempts_run_out(store: Store) -> None:
    await store.submit(new_job("a", max_attempts=2))
    await store.claim("ep", 1, take("w1", T0, T0 + 5))
    assert [j.id for j in await store.overdue(T0 + 4, 10)] == []
    assert [j.id for j in await store.overdue(T0 + 6, 10)] == ["a"]
    before, job = await store.apply_overdue("a", T0 + 6) or (None, None)
    assert before is not None and before.status is S.IN_PROGRESS and before.worker_id == "w1"
    assert job is not None and job.status is S.IN_QUEUE and job.worker_id is None
    await store.claim("ep", 1, take("w2", T0 + 7, T0 + 12))
    _, job = await store.apply_overdue("a", T0 + 13) or (None, None)
    assert job is not None and job.status is S.FAILED
    assert "w2" in orjson.loads(job.error or b"") and "attempt 2 of 2" in orjson.loads(
        job.error or b""
    )


async def test_ping_renews_listed_leases_and_reports_stale_ids(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.submit(new_job("b"))
    await store.claim("ep", 1, take("w1", T0, T0 + 5))
    await store.claim("ep", 1, take("w2", T0, T0 + 5))
    await store.end("b", jobs.cancel(T0 + 1))
    ping = WorkerInfo(id="w1", endpoint="ep", last_seen=T0 + 4, job_ids=("a", "b", "ghost"))
    stale = await store.renew_leases(ping, T0 + 20)
    assert sorted(stale) == ["b", "ghost"]
    assert (await store.get("a")).lease_expires_at == T0 + 20  # type: ignore[union-attr]
    assert await store.overdue(T0 + 6, 10) == []
    seen = await store.workers("ep", T0)
    assert [(w.id, w.job_ids) for w in seen] == [("w1", ("a", "b", "ghost"))]
    assert await store.workers("ep", T0 + 5) == []


async def test_execution_timeout_and_ttl(store: Store) -> None:
    await store.submit(new_job("run", timeout_ms=5_000, ttl_ms=600_000))
    await store.submit(new_job("wait", ttl_ms=10_000))
    await store.claim("ep", 1, take("w", T0, T0 + 100))
    due = {j.id for j in await store.overdue(T0 + 11, 10)}
    assert due == {"run", "wait"}
    for job_id in due:
        applied = await store.apply_overdue(job_id, T0 + 11)
        assert applied is not None and applied[1].status is S.TIMED_OUT
    run = await store.get("run")
    assert run is not None and "execution timeout" in orjson.loads(run.error or b"")
    assert await store.apply_overdue("run", T0 + 12) is None


async def test_retention_purges_finished_jobs_and_their_chunks(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    await store.append_stream("a", W, b"1")
    await store.end("a", done(1, at=T0 + 1))
    assert await store.purge_finished(T0 + 5) == 0
    assert await store.purge_finished(T0 + 12) == 1
    assert await store.get("a") is None and await store.drain_stream("a") == []


async def test_webhooks_are_claimed_retried_and_kept_until_settled(store: Store) -> None:
    await store.submit(new_job("a", webhook="http://h/a"))
    await store.submit(new_job("b"))
    await store.claim("ep", 2, take("w", T0, T0 + 30))
    await store.end("a", done(1, at=T0 + 1))
    await store.end("b", done(2, at=T0 + 1))
    due = await store.due_webhooks(T0 + 1, 10, T0 + 30)
    assert [j.id for j in due] == ["a"]
    assert await store.due_webhooks(T0 + 2, 10, T0 + 30) == []  # hidden while in flight
    assert due[0].webhook_state is jobs.WebhookState.PENDING
    await store.webhook_attempted(
        "a", jobs.WebhookAttempt(state=jobs.WebhookState.PENDING, next_at=T0 + 40)
    )
    assert await store.purge_finished(T0 + 20) == 1  # b only: a's webhook is pending
    again = await store.due_webhooks(T0 + 41, 10, T0 + 70)
    assert [(j.id, j.webhook_attempts) for j in again] == [("a", 1)]
    await store.webhook_attempted("a", jobs.WebhookAttempt(state=jobs.WebhookState.DELIVERED))
    delivered = await store.get("a")
    assert delivered is not None and delivered.webhook_state is jobs.WebhookState.DELIVERED
    assert delivered.webhook_attempts == 2
    assert await store.due_webhooks(T0 + 100, 10, T0 + 130) == []
    assert await store.purge_finished(T0 + 100) == 1


async def test_list_jobs_filters_and_pages_newest_first(store: Store) -> None:
    for i in range(5):
        await store.submit(new_job(f"j{i}", at=T0 + i))
    await store.claim("ep", 2, take("w", T0 + 10, T0 + 40))
    listed = await store.list_jobs(JobQuery(endpoint="ep", limit=3))
    assert [j.id for j in listed] == ["j4", "j3", "j2"]
    running = await store.list_jobs(JobQuery(status=S.IN_PROGRESS))
    assert {j.id for j in running} == {"j0", "j1"}


async def test_submit_many_is_all_or_nothing(store: Store) -> None:
    made = await store.submit_many([new_job(f"m{i}", at=T0 + i) for i in range(3)])
    assert [j.id for j in made] == ["m0", "m1", "m2"] and made[0] == await store.get("m0")
    with pytest.raises(errors.Conflict):
        await store.submit_many([new_job("fresh"), new_job("m1")])
    assert await store.get("fresh") is None
    assert (await store.counts("ep")).in_queue == 3
    assert await store.submit_many([]) == []


async def test_a_stopped_move_changes_nothing(store: Store) -> None:
    await store.submit(new_job("q"))
    assert await store.apply_overdue("q", T0 + 1) is None  # nothing due yet
    assert await store.retry("q", jobs.retry(T0 + 1)) is None  # not retryable
    assert await store.record_progress("q", W, b"1") is False  # not running
    assert await store.get("q") == new_job("q").queued()


async def test_worker_reports_apply_only_to_the_job_the_worker_holds(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.submit(new_job("q"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    other = jobs.Holder(worker_id="w2", endpoint="ep")
    elsewhere = jobs.Holder(worker_id="w", endpoint="ep2")
    for holder in (other, elsewhere):
        assert await store.end("a", done("forged", at=T0 + 1, by=holder)) is None
        assert not await store.record_progress("a", holder, b'"forged"')
        assert not await store.append_stream("a", holder, b'"forged"')
    assert await store.end("q", done("queued", at=T0 + 1)) is None  # not claimed by anyone
    assert await store.drain_stream("a") == []
    running = await store.get("a")
    assert running is not None and running.status is S.IN_PROGRESS and running.output is None
    assert await store.get("q") == new_job("q").queued()


async def test_worker_ids_are_per_endpoint(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w1", T0, T0 + 5))
    await store.renew_leases(WorkerInfo(id="w1", endpoint="ep", last_seen=T0), T0 + 5)
    same_id = WorkerInfo(id="w1", endpoint="ep2", last_seen=T0 + 1, job_ids=("a",))
    assert await store.renew_leases(same_id, T0 + 99) == ["a"]  # not its job: stop it
    assert [(w.id, w.endpoint) for w in await store.workers(None, T0)] == [
        ("w1", "ep"),
        ("w1", "ep2"),
    ]
    assert (await store.get("a")).lease_expires_at == T0 + 5  # type: ignore[union-attr]


async def test_release_undoes_only_the_holders_claim(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.submit(new_job("b"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    await store.claim("ep", 1, take("w2", T0, T0 + 30))
    assert await store.release(["a", "b", "ghost"], jobs.release(W)) == ["a"]
    back = await store.get("a")
    assert back is not None and back.status is S.IN_QUEUE and back.attempts == 0
    assert back.worker_id is None and back.started_at is None
    still = await store.get("b")
    assert still is not None and still.status is S.IN_PROGRESS and still.worker_id == "w2"


async def test_server_ends_leave_no_progress_as_output_and_retry_counts(store: Store) -> None:
    await store.submit(new_job("a"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    await store.record_progress("a", W, b'{"pct": 50}')
    cancelled = await store.end("a", jobs.cancel(T0 + 1))
    assert cancelled is not None and cancelled.output is None  # not a result
    await store.submit(new_job("b"))
    await store.claim("ep", 1, take("w", T0, T0 + 30))
    await store.end("b", done(error="x", at=T0 + 1))
    assert (await store.counts("ep")).retried == 0
    retried = await store.retry("b", jobs.retry(T0 + 2))
    assert retried is not None and retried.retries == 1 and retried.attempts == 0
    assert (await store.counts("ep")).retried == 1


async def test_end_many_ends_each_as_end_would(store: Store) -> None:
    for job_id in ("a", "b", "c"):
        await store.submit(new_job(job_id))
    await store.claim("ep", 2, take("w", T0, T0 + 30))  # a, b
    other = jobs.Holder(worker_id="w2", endpoint="ep")
    ended = await store.end_many(
        [
            ("a", done(1, at=T0 + 1)),
            ("b", done(2, at=T0 + 1, by=other)),
            ("c", done(3, at=T0 + 1)),
            ("x", done(4, at=T0 + 1)),
        ]
    )
    assert [j.status if j else None for j in ended] == [S.COMPLETED, None, None, None]
    b, c = await store.get("b"), await store.get("c")
    assert b is not None and b.status is S.IN_PROGRESS and c is not None and c.status is S.IN_QUEUE


async def test_end_many_of_one_holder_in_one_go(store: Store) -> None:
    for job_id in ("a", "b", "c"):
        await store.submit(new_job(job_id))
    await store.claim("ep", 2, take("w", T0, T0 + 30))  # a, b
    await store.record_progress("b", W, b'"half"')
    ends = [("a", done(1, at=T0 + 1)), ("b", done(at=T0 + 1)), ("c", done(3, at=T0 + 1))]
    ended = await store.end_many([*ends, ("x", done(4, at=T0 + 1))])
    assert [j.status if j else None for j in ended] == [S.COMPLETED, S.COMPLETED, None, None]
    a, b = ended[0], ended[1]
    assert a is not None and a.output == b"1" and a.finished_at == T0 + 1
    assert b is not None and b.output == b'"half"'  # no output: the last progress stays
    assert await store.end_many(ends) == [None, None, None]  # terminal means terminal
