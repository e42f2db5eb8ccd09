"""JobService on the in-memory store, with a clock the test moves: the use cases, fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from anypod import access, errors, jobs, notifier
from anypod.endpoints import Defaults, Endpoint
from anypod.service import JobService, Timing
from anypod.store import WorkerInfo
from anypod.store.memory import MemoryStore
from tests.clock import T0, Clock

S = jobs.JobStatus


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def svc(clock: Clock) -> AsyncIterator[JobService]:
    store = MemoryStore()
    endpoints = {
        "ep": Endpoint(name="ep", defaults=Defaults(max_attempts=2, execution_timeout_ms=20_000)),
        "other": Endpoint(name="other"),
    }
    timing = Timing(lease=10, take_hold=0.05, counts_cache=0, ping_interval=1)
    async with store:
        yield JobService(store, endpoints, timing=timing, clock=clock)


def sub(**changes: object) -> jobs.Submission:
    return jobs.Submission(input=orjson.dumps(changes or {"x": 1}))


def held(worker: str, endpoint: str = "ep") -> jobs.Holder:
    return jobs.Holder(worker_id=worker, endpoint=endpoint)


def result(output: object = None, error: object = None) -> jobs.Result:
    return jobs.Result(
        output=None if output is None else orjson.dumps(output),
        error=None if error is None else orjson.dumps(error),
    )


async def test_submit_take_report_and_read(svc: JobService, clock: Clock) -> None:
    job = await svc.submit("ep", sub(), key=access.bootstrap_key("secret-1"))
    assert job.status is S.IN_QUEUE and job.max_attempts == 2
    assert job.owner == access.bootstrap_key("secret-1").id
    assert job.policy.execution_timeout_ms == 20_000 and job.retention_ms == 1_800_000
    clock.now += 2
    (taken,) = await svc.take("ep", "w1", 5)
    assert taken.id == job.id and taken.worker_id == "w1" and taken.lease_expires_at == T0 + 12
    await svc.report(held("w1"), job.id, jobs.Progress(b'"half"'))
    assert (await svc.get("ep", job.id)).output == b'"half"'
    await svc.report(held("w1"), job.id, result({"y": 2}))
    done = await svc.get("ep", job.id)
    assert done.status is S.COMPLETED and done.output == b'{"y":2}' and done.delay_ms(0) == 2000
    await svc.report(held("w1"), job.id, result(error="late"))  # dropped: terminal means terminal
    assert (await svc.get("ep", job.id)).status is S.COMPLETED


async def test_unknown_endpoint_and_other_endpoints_job(svc: JobService) -> None:
    with pytest.raises(errors.EndpointNotFound):
        await svc.submit("nope", sub())
    job = await svc.submit("ep", sub())
    with pytest.raises(errors.JobNotFound):
        await svc.get("other", job.id)


async def test_take_holds_until_a_submit_wakes_it(svc: JobService) -> None:
    svc.timing = Timing(take_hold=5)
    waiting = asyncio.create_task(svc.take("ep", "w1", 1))
    await asyncio.sleep(0.01)
    job = await svc.submit("ep", sub())
    assert [j.id for j in await asyncio.wait_for(waiting, 1)] == [job.id]


async def test_submit_and_wait_returns_the_finished_job(svc: JobService) -> None:
    async def worker() -> None:
        (taken,) = await svc.take("ep", "w", 1)
        await svc.report(held("w"), taken.id, result("ok"))

    svc.timing = Timing(take_hold=5)
    running = asyncio.create_task(worker())
    done = await svc.submit_and_wait("ep", sub(), timeout=5)
    await running
    assert done.status is S.COMPLETED and done.id.startswith("sync-") and done.output == b'"ok"'
    assert done.retention_ms == svc.timing.sync_retention_ms


async def test_cancel_a_running_job_tells_its_worker(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    cancelled = await svc.cancel("ep", job.id)
    assert cancelled.status is S.CANCELLED
    assert await svc.stop_signals("ep", "w1") == [job.id]
    again = await svc.cancel("ep", job.id)  # finished: unchanged
    assert again.status is S.CANCELLED and again.finished_at == cancelled.finished_at


async def test_retry_only_failed_or_timed_out(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    with pytest.raises(errors.Conflict, match="IN_QUEUE"):
        await svc.retry("ep", job.id)
    await svc.take("ep", "w1", 1)
    await svc.report(held("w1"), job.id, result(error="flaky"))
    retried = await svc.retry("ep", job.id)
    assert retried.status is S.IN_QUEUE and retried.attempts == 0 and retried.error is None


async def test_sweep_requeues_a_lapsed_lease_then_fails_it(svc: JobService, clock: Clock) -> None:
    job = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    clock.now += 11
    assert await svc.sweep() == 1
    assert (await svc.get("ep", job.id)).status is S.IN_QUEUE
    assert await svc.stop_signals("ep", "w1") == [job.id]  # the old worker drops it
    await svc.take("ep", "w2", 1)
    clock.now += 11
    await svc.sweep()
    failed = await svc.get("ep", job.id)
    assert failed.status is S.FAILED and b"w2 stopped responding" in (failed.error or b"")


async def test_pings_keep_leases_and_flag_stale_jobs(svc: JobService, clock: Clock) -> None:
    a = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    for _ in range(2):  # 16 s: past the 10 s lease, inside the 20 s execution timeout
        clock.now += 8
        ping = WorkerInfo(id="w1", endpoint="ep", last_seen=clock.now, job_ids=(a.id, "x"))
        await svc.ping(ping)
        assert await svc.sweep() == 0
    assert await svc.stop_signals("ep", "w1") == ["x"]
    health = await svc.health("ep")
    assert (health.running_workers, health.counts.in_progress) == (1, 1)


async def test_execution_timeout_and_ttl(svc: JobService, clock: Clock) -> None:
    running = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    waiting = await svc.submit("ep", jobs.Submission(input=b"{}", ttl_ms=15_000))
    clock.now += 21
    await svc.ping(WorkerInfo(id="w1", endpoint="ep", last_seen=clock.now, job_ids=(running.id,)))
    await svc.sweep()
    for job_id, why in [(running.id, b"execution timeout"), (waiting.id, b"TTL")]:
        job = await svc.get("ep", job_id)
        assert job.status is S.TIMED_OUT and why in (job.error or b""), job


async def test_stream_drains_and_wakes_on_a_chunk(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    waiting = asyncio.create_task(svc.stream("ep", job.id, 5))
    await asyncio.sleep(0.01)
    await svc.stream_chunk(held("w1"), job.id, b"1")
    _, chunks = await asyncio.wait_for(waiting, 1)
    assert chunks == [b"1"]
    assert (await svc.stream("ep", job.id, 0))[1] == []


async def test_purge_queue_and_counts(svc: JobService) -> None:
    for _ in range(3):
        await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    assert await svc.purge_queue("ep") == 2
    counts = await svc.counts("ep")
    assert (counts.in_queue, counts.in_progress, counts.cancelled) == (0, 1, 2)


async def test_worker_tokens_serve_one_endpoint(svc: JobService) -> None:
    token = await svc.mint_worker_token("ep")
    await svc.authenticate_worker("ep", token)
    for endpoint, bad in [("other", token), ("ep", "wrong"), ("ep", None)]:
        with pytest.raises(errors.Unauthorized):
            await svc.authenticate_worker(endpoint, bad)


async def test_a_job_with_a_webhook_wakes_the_sender(svc: JobService) -> None:
    job = await svc.submit("ep", jobs.Submission(input=b"{}", webhook="http://h/cb"))
    await svc.take("ep", "w1", 1)
    with svc.notifier.listen(notifier.WEBHOOKS) as listener:
        await svc.report(held("w1"), job.id, result(1))
        assert await listener.wait(0.5)
    ended = await svc.get("ep", job.id)
    assert ended.webhook_state is jobs.WebhookState.PENDING


async def test_server_health_reports_a_closed_store(svc: JobService) -> None:
    assert (await svc.server_health()).store
    await svc.store.close()
    assert not (await svc.server_health()).store


async def test_reports_are_fenced_to_the_worker_holding_the_job(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    queued = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    with pytest.raises(errors.Conflict):
        await svc.report(held("w2"), job.id, result("forged"))
    with pytest.raises(errors.Conflict):
        await svc.report(held("w1"), queued.id, result("not taken"))
    with pytest.raises(errors.JobNotFound):  # a token for another endpoint sees nothing
        await svc.report(held("w1", "other"), job.id, result("forged"))
    with pytest.raises(errors.Conflict):
        await svc.report(held("w2"), job.id, jobs.Progress(b"1"))
    with pytest.raises(errors.JobNotFound):
        await svc.stream_chunk(held("w1", "other"), job.id, b"1")
    running = await svc.get("ep", job.id)
    assert running.status is S.IN_PROGRESS and running.output is None
    await svc.report(held("w1"), job.id, result("real"))
    await svc.report(held("w1"), job.id, result("repeat"))  # a retried post: dropped, no error
    assert (await svc.get("ep", job.id)).output == b'"real"'


async def test_stop_signals_are_per_endpoint(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)
    await svc.cancel("ep", job.id)
    assert await svc.stop_signals("other", "w1") == []  # another endpoint's token drains nothing
    assert await svc.stop_signals("ep", "w1") == [job.id]


async def test_a_worker_that_hung_up_claims_nothing(svc: JobService) -> None:
    gone = asyncio.Event()
    held = asyncio.create_task(svc.take("ep", "w1", 1, gone=gone))
    await asyncio.sleep(0.01)
    gone.set()  # killed while its job-take was held
    assert await asyncio.wait_for(held, 1) == []
    job = await svc.submit("ep", sub())
    assert await svc.take("ep", "w1", 1, gone=gone) == []
    assert (await svc.get("ep", job.id)).status is S.IN_QUEUE


async def test_a_claim_made_as_the_worker_hangs_up_is_released(svc: JobService) -> None:
    job = await svc.submit("ep", sub())
    gone = asyncio.Event()
    claim = svc.store.claim

    async def claim_then_hang_up(*args: object, **kwargs: object) -> list[jobs.Job]:
        taken = await claim(*args, **kwargs)  # type: ignore[arg-type]
        gone.set()
        return taken

    svc.store.claim = claim_then_hang_up  # type: ignore[method-assign]
    assert await svc.take("ep", "w1", 1, gone=gone) == []
    back = await svc.get("ep", job.id)
    assert back.status is S.IN_QUEUE and back.attempts == 0 and back.worker_id is None
    svc.store.claim = claim  # type: ignore[method-assign]
    (again,) = await svc.take("ep", "w2", 1)
    assert again.id == job.id and again.attempts == 1


async def test_health_counts_workers_as_they_are_now(svc: JobService, clock: Clock) -> None:
    await svc.take("ep", "w1", 1)  # asked for work, no ping yet: idle
    health = await svc.health("ep")
    assert (health.idle_workers, health.running_workers) == (1, 0)
    await svc.submit("ep", sub())
    await svc.take("ep", "w1", 1)  # holds a job: running at once, before any ping
    health = await svc.health("ep")
    assert (health.idle_workers, health.running_workers) == (0, 1)
    await svc.ping(WorkerInfo(id="w2", endpoint="ep", last_seen=clock.now))
    gone = asyncio.Event()
    gone.set()
    clock.now += 0.5
    await svc.take("ep", "w2", 1, gone=gone)  # killed while its job-take was held
    health = await svc.health("ep")
    assert (health.idle_workers, health.running_workers) == (0, 1)
