"""The worker's logic on an in-memory job source: real handler processes, no server.

Each test writes the handler it needs; :class:`MemoryJobSource` stands in for the server.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from anypod import types
from anypod.worker.memory_source import MemoryJobSource
from anypod.worker.options import WorkerOptions
from anypod.worker.pace import MAX_PREFETCH
from anypod.worker.parent import Worker
from anypod.worker.records import JobState, Records

Start = Callable[..., Any]


def job(job_id: str, **inp: object) -> dict[str, object]:
    return {"id": job_id, "input": inp}


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(handler_source, **options)`` → (worker, source), running."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def make(source_code: str, **options: Any) -> tuple[Worker, MemoryJobSource]:
        path = tmp_path / f"handler{len(running)}.py"
        path.write_text(textwrap.dedent(source_code))
        opts = WorkerOptions(
            server="http://127.0.0.1:9",
            endpoint="ep",
            token="t",
            handler=str(path),
            worker_id="w1",
            gpu="cpu",
            ping_interval=0.05,
            stop_grace=0.5,
            **options,
        )
        source = MemoryJobSource(hold=0.05)
        worker = Worker(opts, source)
        running.append((worker, asyncio.create_task(worker.run())))
        return worker, source

    yield make
    for worker, task in running:
        worker.request_stop()
        await asyncio.wait_for(task, 15)


ECHO = """
import anypod

def handler(job):
    anypod.progress(job, "started")
    anypod.progress(job, "half")
    return {"echo": job["input"]}
"""


async def test_runs_jobs_and_reports_progress_before_the_result(start: Start) -> None:
    _, source = await start(ECHO)
    await source.put(job("a", x=1), job("b", x=2))
    assert await source.result("a") == {"output": {"echo": {"x": 1}}}
    assert await source.result("b") == {"output": {"echo": {"x": 2}}}
    kinds = [kind for kind, job_id, _ in source.reports if job_id == "a"]
    assert kinds == ["progress", "progress", "done"]
    assert [b["output"] for b in source.of("progress", "a")] == ["started", "half"]


async def test_generator_chunks_then_aggregate(start: Start) -> None:
    _, source = await start(
        """
        import runpod

        def handler(job):
            for i in range(3):
                yield {"i": i}

        runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
        """
    )
    await source.put(job("g"))
    assert await source.result("g") == {"output": [{"i": 0}, {"i": 1}, {"i": 2}]}
    assert [c["output"] for c in source.of("chunk", "g")] == [{"i": 0}, {"i": 1}, {"i": 2}]


DIES = """
import os, signal, time

def handler(job):
    if job["input"].get("crash"):
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}
"""


async def test_a_crash_fails_its_job_and_the_next_one_waits_for_a_new_child(start: Start) -> None:
    worker, source = await start(DIES)
    await source.put(job("first"))
    first_pid = (await source.result("first"))["output"]["pid"]
    await source.put(job("crash", crash=True))
    await asyncio.sleep(0.05)  # taken and running
    await source.put(job("after"))  # arrives while the child dies and restarts
    crashed = await source.result("crash")
    assert "killed by SIGKILL" in crashed["error"]
    after = await source.result("after")
    assert after["output"]["pid"] != first_pid  # ran, on the new child
    assert len(worker.records) == 0


SLEEPS = """
import time

def handler(job):
    time.sleep(job["input"].get("seconds", 0))
    return {"slept": job["input"].get("seconds", 0)}
"""


async def test_a_stopped_job_posts_nothing_and_the_worker_goes_on(start: Start) -> None:
    worker, source = await start(SLEEPS)
    await source.put(job("long", seconds=30))
    while (record := worker.records.get("long")) is None or record.state is not JobState.RUNNING:
        await asyncio.sleep(0.02)
    await source.stop("long")
    await source.put(job("next", seconds=0))
    assert await source.result("next", timeout=15) == {"output": {"slept": 0}}
    assert source.of("done", "long") == []
    assert "long" not in worker.records


async def test_pings_list_the_jobs_held(start: Start) -> None:
    _, source = await start(SLEEPS)
    await source.put(job("held", seconds=0.5))
    await source.result("held")
    assert any("held" in ping for ping in source.pings)
    await asyncio.sleep(0.2)  # a few ping intervals after the result was posted
    assert "held" not in source.pings[-1]


BATCH = """
import anypod

@anypod.batch(max_size=2, max_wait_ms=50)
def handler(jobs):
    return [{"n": j["input"]["n"], "batch": len(jobs)} for j in jobs]
"""


async def test_batches_are_formed_and_results_go_to_each_job(start: Start) -> None:
    worker, source = await start(BATCH)
    await source.put(*(job(f"j{i}", n=i) for i in range(5)))
    outputs = [(await source.result(f"j{i}"))["output"] for i in range(5)]
    assert [o["n"] for o in outputs] == list(range(5))
    assert max(o["batch"] for o in outputs) == 2
    assert worker.capacity == 4  # a batch running and the next one filling


async def test_stop_drains_running_jobs_first(tmp_path: Path) -> None:
    path = tmp_path / "h.py"
    path.write_text(textwrap.dedent(SLEEPS))
    opts = WorkerOptions(
        server="http://127.0.0.1:9", endpoint="ep", token="t", handler=str(path), worker_id="w",
        gpu="cpu", ping_interval=0.05,
    )  # fmt: skip
    source = MemoryJobSource(hold=0.05)
    worker = Worker(opts, source)
    task = asyncio.create_task(worker.run())
    await source.put(job("busy", seconds=0.5))
    while not worker.records:
        await asyncio.sleep(0.01)
    worker.request_stop()
    await asyncio.wait_for(task, 15)
    assert source.of("done", "busy") == [{"output": {"slept": 0.5}}]


def test_records_refuse_moves_the_states_do_not_allow() -> None:
    records = Records()
    records.add({"id": "a", "input": {}})
    records.move("a", JobState.RUNNING)
    records.move("a", JobState.REPORTING)
    with pytest.raises(ValueError, match="reporting -> running"):
        records.move("a", JobState.RUNNING)
    assert records.slots_used == 0 and records.ids() == ["a"]
    assert records.forget("a") is not None and not records


REFRESH_OR_CRASH = """
import asyncio, os, signal

async def handler(job):
    if job["input"].get("refresh"):
        return {"refresh_worker": True, "pid": os.getpid()}
    if job["input"].get("crash"):
        await asyncio.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}
"""


async def test_a_crash_while_a_refresh_waits_does_not_stall_the_worker(start: Start) -> None:
    _, source = await start(REFRESH_OR_CRASH, concurrency=2)
    await source.put(job("crash", crash=True), job("refresh", refresh=True))
    assert (await source.result("refresh"))["output"]["pid"] > 0
    assert "killed by SIGKILL" in (await source.result("crash"))["error"]
    await source.put(job("after"))
    assert "pid" in (await source.result("after"))["output"]  # still taking jobs


LATE = """
import asyncio

async def handler(job):
    try:
        await asyncio.sleep(job["input"]["seconds"])
    except asyncio.CancelledError:
        return {"finished": "anyway"}  # ignores the cancel
    return {"slept": job["input"]["seconds"]}
"""


class SlowReports(MemoryJobSource):
    async def done(
        self, job_id: str, body: bytes, *, is_stream: bool, take: int = 0
    ) -> list[types.JSONDict]:
        if job_id == "x":
            await asyncio.sleep(1.5)  # longer than the worker's stop grace
        return await super().done(job_id, body, is_stream=is_stream, take=take)


async def test_stopping_a_job_that_finished_anyway_kills_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "late.py"
    path.write_text(textwrap.dedent(LATE))
    opts = WorkerOptions(
        server="http://127.0.0.1:9", endpoint="ep", token="t", handler=str(path), worker_id="w",
        gpu="cpu", ping_interval=0.05, stop_grace=0.5, concurrency=2,
    )  # fmt: skip
    source = SlowReports(hold=0.05)
    worker = Worker(opts, source)
    task = asyncio.create_task(worker.run())
    try:
        await source.put(job("x", seconds=5), job("y", seconds=1.2))
        while len(worker.records) < 2:
            await asyncio.sleep(0.01)
        await source.stop("x")
        assert await source.result("y", timeout=10) == {"output": {"slept": 1.2}}
        assert await source.result("x", timeout=10) == {"output": {"finished": "anyway"}}
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 15)


async def test_short_jobs_come_with_results_and_one_waits_ready(start: Start) -> None:
    worker, source = await start(ECHO)
    await source.put(*(job(f"j{i}") for i in range(30)))
    for i in range(30):
        await source.result(f"j{i}")
    assert worker.pace.short
    assert any(source.asked_with_results)  # results ask for the next jobs
    assert len(source.takes) < 5  # not a job-take per job: a few, for many jobs each
    assert max(source.takes) <= 1 + MAX_PREFETCH


SLEEPY = """
import time

def handler(job):
    time.sleep(job["input"].get("s", 0))
    return {"s": job["input"].get("s", 0)}
"""


async def test_jobs_prefetched_behind_a_long_one_are_handed_back(start: Start) -> None:
    worker, source = await start(SLEEPY)
    await source.put(*(job(f"q{i}") for i in range(40)))
    for i in range(40):
        await source.result(f"q{i}")
    assert worker.pace.short
    quick = [job(f"p{i}") for i in range(5)]
    await source.put(*quick, *(job(f"long{i}", s=0.6) for i in range(20)))
    await asyncio.sleep(0.4)  # the quick ones took long ones with their results; one runs
    assert len(source.released) >= 1
    held = [r.id for r in worker.records.in_state(JobState.TAKEN)]
    assert held == [] and not worker.pace.short
    ran = [j for j in (f"long{i}" for i in range(20)) if j not in source.released]
    assert await source.result(ran[0], timeout=5) == {"output": {"s": 0.6}}


REFRESH = """
import os

def handler(job):
    return {"pid": os.getpid(), "refresh_worker": job["input"].get("refresh", False)}
"""


async def test_refresh_worker_holds_with_prefetched_jobs(start: Start) -> None:
    worker, source = await start(REFRESH)
    await source.put(*(job(f"a{i}") for i in range(20)))
    for i in range(20):
        await source.result(f"a{i}")
    assert worker.pace.short
    await source.put(job("r", refresh=True), *(job(f"b{i}") for i in range(10)))
    refreshed = (await source.result("r"))["output"]["pid"]
    later = [await source.result(f"b{i}") for i in range(10)]
    assert all("output" in body for body in later), later
    later = [body["output"]["pid"] for body in later]
    assert refreshed not in later  # every later job ran in the fresh process
