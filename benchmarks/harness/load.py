"""HTTP load from the benchmark process (aiohttp, one keep-alive session): sequential samples
(e.g. ``/runsync`` one at a time), closed-loop clients that share one job counter, each
submitting a job and waiting for its end before taking the next, and :func:`submit_all`:
submit every job first, then poll them all until done.

Waiting is a :class:`Target`'s business: long-poll (anypod ``status-sync``) or a status GET
every ``poll_s`` seconds, sleeping first (a job cannot be done the instant it is accepted).
Latency = submit sent .. terminal status seen; jobs/s = completed / (first submit .. last end).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from benchmarks.harness import stats

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
PHASE_LIMIT = 55.0  # seconds: a phase takes no new job after this, whatever the counts say
JSON_HEADERS = {"Content-Type": "application/json"}
Body = Callable[[int], bytes]


def session(
    connections: int, timeout: float = 120.0, headers: dict[str, str] | None = None
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=120),
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=headers,
    )


def job_body(i: int) -> bytes:
    return json.dumps({"input": {"i": i}}).encode()


@dataclass(frozen=True)
class Target:
    submit_url: str
    status_url: str  # with "{id}"
    done: frozenset[str]
    failed: frozenset[str]
    poll_s: float = 0.0  # sleep before each status request; 0 for a long-poll


def anypod_target(base_url: str, endpoint: str, poll_s: float | None = None) -> Target:
    """``POST /run``, then ``status-sync`` long-polls, or with ``poll_s`` ``GET /status``."""
    wait = "status-sync/{id}?wait=60000" if poll_s is None else "status/{id}"
    return Target(
        f"{base_url}/v2/{endpoint}/run",
        f"{base_url}/v2/{endpoint}/{wait}",
        frozenset({"COMPLETED"}),
        frozenset({"FAILED", "CANCELLED", "TIMED_OUT"}),
        poll_s or 0.0,
    )


def celery_target(base_url: str, poll_s: float) -> Target:
    """The Celery baseline's API (``benchmarks/baselines/celery_stack/app.py``)."""
    done, failed = frozenset({"completed"}), frozenset({"failed"})
    return Target(f"{base_url}/jobs", f"{base_url}/jobs/{{id}}", done, failed, poll_s)


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    polls: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    give_up_at: float = math.inf  # perf_counter time after which a client stops waiting


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    resp.raise_for_status()
    data: dict[str, Any] = await resp.json(content_type=None)
    return data


async def submit_and_wait(
    session: aiohttp.ClientSession, target: Target, body: bytes, tally: Tally
) -> None:
    t0 = time.perf_counter()
    async with session.post(target.submit_url, data=body, headers=JSON_HEADERS) as resp:
        url = target.status_url.format(id=(await _json(resp))["id"])
    while True:
        if target.poll_s:
            await asyncio.sleep(target.poll_s)
        async with session.get(url) as resp:
            status = (await _json(resp))["status"]
        tally.polls += 1
        if status in target.done:
            tally.latencies_ms.append((time.perf_counter() - t0) * 1000)
            return
        if status in target.failed or time.perf_counter() > tally.give_up_at:
            tally.failed += 1
            tally.errors[status if status in target.failed else "gave up waiting"] += 1
            return


async def closed_loop(
    clients: int, job: Callable[[int, int], Awaitable[None]], count: int | None, seconds: float
) -> float:
    """``clients`` loops calling ``job(client, i)`` for a shared ``i`` until ``count`` jobs were
    taken or ``seconds`` passed; returns the wall time."""
    numbers = iter(range(count if count is not None else 1 << 62))
    began = time.perf_counter()

    async def client(n: int) -> None:
        for i in numbers:
            if time.perf_counter() - began > seconds:
                return
            await job(n, i)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - began


@dataclass(frozen=True)
class Outcome:
    completed: int
    failed: int
    wall_s: float
    jobs_s: float
    latency_ms: stats.Summary
    polls_per_job: float
    errors: dict[str, int]
    truncated: bool

    def describe(self) -> str:
        lat = self.latency_ms
        return (
            f"{self.jobs_s:.0f} jobs/s ({self.completed} ok, {self.failed} failed in "
            f"{self.wall_s:.1f} s; latency p50 {lat.p50:.1f} ms, p99 {lat.p99:.1f} ms; "
            f"{self.polls_per_job:.2f} status calls/job"
            f"{f'; errors {self.errors}' if self.errors else ''}"
            f"{f'; TRUNCATED at {PHASE_LIMIT:g} s' if self.truncated else ''})"
        )


async def submit_phase(
    session: aiohttp.ClientSession,
    targets: list[Target],
    jobs: int | None,
    clients: int,
    body: Body = job_body,
    seconds: float = PHASE_LIMIT,
    method: stats.Method = "linear",
) -> Outcome:
    """Closed-loop submit-and-wait; client ``n`` uses ``targets[n % len(targets)]``. With
    ``jobs=None`` clients run for ``seconds``; otherwise they stop early after ``seconds``."""
    tally = Tally(give_up_at=time.perf_counter() + seconds + 30)

    async def job(n: int, i: int) -> None:
        try:
            await submit_and_wait(session, targets[n % len(targets)], body(i), tally)
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            tally.failed += 1
            tally.errors[f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()] += 1

    wall = await closed_loop(clients, job, jobs, seconds)
    done = len(tally.latencies_ms)
    return Outcome(
        completed=done,
        failed=tally.failed,
        wall_s=wall,
        jobs_s=done / wall if wall else 0.0,
        latency_ms=stats.summary(tally.latencies_ms, method),
        polls_per_job=tally.polls / max(done, 1),
        errors=dict(tally.errors),
        truncated=jobs is not None and done + tally.failed < jobs,
    )


IDLE_PAUSE = 0.02  # seconds: submit_all's pause after a full pass over the outstanding ids
# found nothing new


@dataclass(frozen=True)
class SubmitAll:
    """What :func:`submit_all` saw. ``wall_s``: first submit sent .. last terminal status seen;
    ``submit_s``: first submit sent .. last submit answered (phase 1)."""

    jobs: int
    submitted: int
    completed: int
    failed: int
    submit_s: float
    wall_s: float
    jobs_s: float  # completed / wall_s
    submit_jobs_s: float  # submitted / submit_s
    polls: int
    polls_per_job: float  # status GETs / completed job
    idle_pauses: int
    errors: dict[str, int]
    truncated: bool

    def describe(self) -> str:
        return (
            f"{self.jobs_s:.0f} jobs/s ({self.completed} ok, {self.failed} failed in "
            f"{self.wall_s:.2f} s; submitted at {self.submit_jobs_s:.0f}/s in {self.submit_s:.2f}"
            f" s; {self.polls_per_job:.2f} status GETs/job, {self.idle_pauses} idle pauses"
            f"{f'; errors {self.errors}' if self.errors else ''}"
            f"{'; TRUNCATED' if self.truncated else ''})"
        )


async def submit_all(
    session: aiohttp.ClientSession,
    target: Target,
    jobs: int,
    clients: int,
    body: Body = job_body,
    pause: float = IDLE_PAUSE,
    limit: float = 2 * PHASE_LIMIT,
) -> SubmitAll:
    """Submit everything, then poll until everything is done (``target.poll_s`` is ignored).

    Phase 1: ``clients`` tasks take job indices from one shared iterator and ``POST`` each to
    ``target.submit_url`` as fast as answers come back, until ``jobs`` are submitted. Phase 2:
    ``clients`` tasks take the outstanding status URLs from one FIFO (submit order) and ``GET``
    each; a job not terminal yet goes back to the end of the FIFO. No sleep between polls, except
    that when a full pass (as many answers as jobs were outstanding when it began) saw no job
    end, every poller pauses ``pause`` seconds. A submit or poll that errs counts the job as
    failed; after ``limit`` seconds the jobs still outstanding count as failed (truncated)."""
    errors: collections.Counter[str] = collections.Counter()
    ids: list[str | None] = [None] * jobs
    numbers = iter(range(jobs))
    began = time.perf_counter()

    def error(exc: BaseException) -> None:
        errors[f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()] += 1

    async def submitter() -> None:
        for i in numbers:
            try:
                async with session.post(target.submit_url, data=body(i), headers=JSON_HEADERS) as r:
                    ids[i] = str((await _json(r))["id"])
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                error(exc)

    await asyncio.gather(*(submitter() for _ in range(clients)))
    submitted_at = time.perf_counter()

    fifo = collections.deque(target.status_url.format(id=i) for i in ids if i is not None)
    submitted = len(fifo)
    d = _Drain(outstanding=submitted, failed=jobs - submitted, pass_left=submitted)
    d.last_end, give_up = submitted_at, began + limit

    async def poller() -> None:
        while fifo and time.perf_counter() < give_up:
            if (wait := d.resume_at - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
                if not fifo:
                    return
            url = fifo.popleft()
            try:
                async with session.get(url) as r:
                    status = (await _json(r))["status"]
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                error(exc)
                d.end(ok=False)
            else:
                d.polls += 1
                if status in target.done:
                    d.end(ok=True)
                elif status in target.failed:
                    errors[str(status)] += 1
                    d.end(ok=False)
                else:
                    fifo.append(url)
            d.answered(pause)

    await asyncio.gather(*(poller() for _ in range(clients)))
    truncated = d.outstanding > 0
    if truncated:
        errors["gave up waiting"] += d.outstanding
        d.failed += d.outstanding
        d.last_end = time.perf_counter()
    wall, submit_s = d.last_end - began, submitted_at - began
    return SubmitAll(
        jobs=jobs,
        submitted=submitted,
        completed=d.completed,
        failed=d.failed,
        submit_s=submit_s,
        wall_s=wall,
        jobs_s=d.completed / wall if wall > 0 else 0.0,
        submit_jobs_s=submitted / submit_s if submit_s > 0 else 0.0,
        polls=d.polls,
        polls_per_job=d.polls / max(d.completed, 1),
        idle_pauses=d.pauses,
        errors=dict(errors),
        truncated=truncated,
    )


@dataclass
class _Drain:
    """:func:`submit_all`'s phase 2 counters; a pass = as many answers as jobs were outstanding
    when it began."""

    outstanding: int
    failed: int
    pass_left: int
    completed: int = 0
    polls: int = 0
    pass_new: int = 0
    pauses: int = 0
    resume_at: float = 0.0
    last_end: float = 0.0

    def end(self, ok: bool) -> None:
        self.outstanding -= 1
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        self.pass_new += 1
        self.last_end = time.perf_counter()

    def answered(self, pause: float) -> None:
        self.pass_left -= 1
        if self.pass_left <= 0:
            if not self.pass_new:
                self.resume_at = time.perf_counter() + pause
                self.pauses += 1
            self.pass_left, self.pass_new = self.outstanding, 0


@dataclass(frozen=True)
class Answer:
    sent: float  # perf_counter times
    answered: float
    reply: dict[str, Any]


async def runsync_loop(
    session: aiohttp.ClientSession, base: str, body: Body, clients: int, until: float
) -> tuple[list[Answer], collections.Counter[str]]:
    """Closed-loop ``POST {base}/runsync?wait=60000`` clients until ``until`` (perf_counter);
    a reply that is not terminal yet (the wait ran out) is followed by ``status-sync``. Returns
    the COMPLETED answers and a count of everything else."""
    answers: list[Answer] = []
    bad: collections.Counter[str] = collections.Counter()

    async def job(client: int, i: int) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(
                f"{base}/runsync?wait=60000", data=body(i), headers=JSON_HEADERS
            ) as r:
                reply = orjson.loads(await r.read())
            while reply.get("status") not in TERMINAL and "id" in reply:
                async with session.get(f"{base}/status-sync/{reply['id']}?wait=60000") as r:
                    reply = orjson.loads(await r.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            bad[type(exc).__name__] += 1
            return
        if reply.get("status") == "COMPLETED":
            answers.append(Answer(t0, time.perf_counter(), reply))
        else:
            bad[str(reply.get("status") or reply.get("error"))] += 1

    await closed_loop(clients, job, None, until - time.perf_counter())
    return answers, bad


async def sequential(
    n: int, step: Callable[[int], Awaitable[object]], warmup: int = 0, limit: float = PHASE_LIMIT
) -> list[float]:
    """``step(i)`` one at a time, ``warmup`` unmeasured first; ms per measured step. Stops after
    ``limit`` seconds."""
    measured: list[float] = []
    began = time.perf_counter()
    for i in range(warmup + n):
        t0 = time.perf_counter()
        await step(i)
        if i >= warmup:
            measured.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - began > limit:
            break
    return measured


async def runsync(session: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, Any]:
    """``POST .../runsync``; anything but HTTP 200 with ``COMPLETED`` raises."""
    async with session.post(url, data=body, headers=JSON_HEADERS) as resp:
        reply: dict[str, Any] = await resp.json(content_type=None)
    if resp.status != 200 or reply.get("status") != "COMPLETED":
        raise RuntimeError(f"runsync {url}: HTTP {resp.status} {reply}")
    return reply


async def get_ok(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> Any:
    """GET that must answer 200; its JSON (None for an empty body)."""
    async with session.get(url, headers=headers) as resp:
        text = await resp.text()
    if resp.status != 200:
        raise RuntimeError(f"GET {url}: HTTP {resp.status} {text[:300]}")
    return json.loads(text) if text else None
