"""Submit-then-poll load generator (aiohttp), target-agnostic.

A `Target` is a submit URL plus a status URL template; the same generator drives
the Celery baseline (`POST /jobs`, `GET /jobs/{id}`) and anypod's RunPod API
(`POST /v2/{ep}/run`, `GET /v2/{ep}/status/{id}`).

    python loadgen.py --target celery --base-url http://127.0.0.1:8100 -n 2000 -c 32
    python loadgen.py --target runpod --base-url http://127.0.0.1:8000 --endpoint ep -n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

PayloadFn = Callable[[int], dict[str, Any]]


def default_payload(i: int) -> dict[str, Any]:
    return {"i": i, "audio_url": f"https://example.invalid/audio/{i}.wav"}


@dataclass(frozen=True)
class Target:
    submit_url: str
    status_url: str  # template with "{id}"
    done: frozenset[str]
    failed: frozenset[str]
    headers: dict[str, str] = field(default_factory=dict)
    id_key: str = "id"
    status_key: str = "status"

    def body(self, job_input: dict[str, Any]) -> dict[str, Any]:
        return {"input": job_input}


def celery_target(base_url: str) -> Target:
    return Target(
        submit_url=f"{base_url}/jobs",
        status_url=f"{base_url}/jobs/{{id}}",
        done=frozenset({"completed"}),
        failed=frozenset({"failed"}),
    )


def runpod_target(base_url: str, endpoint: str, api_key: str | None = None) -> Target:
    return Target(
        submit_url=f"{base_url}/v2/{endpoint}/run",
        status_url=f"{base_url}/v2/{endpoint}/status/{{id}}",
        done=frozenset({"COMPLETED"}),
        failed=frozenset({"FAILED", "CANCELLED", "TIMED_OUT"}),
        headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
    )


@dataclass
class Result:
    jobs: int
    concurrency: int
    poll_interval_s: float
    completed: int
    failed: int
    wall_s: float
    jobs_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    polls: int
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"n={self.jobs} c={self.concurrency} poll={self.poll_interval_s * 1000:.0f}ms  "
            f"completed={self.completed} failed={self.failed}  "
            f"{self.jobs_per_s:.1f} jobs/s  wall={self.wall_s:.2f}s  "
            f"p50={self.p50_ms:.1f}ms p99={self.p99_ms:.1f}ms "
            f"mean={self.mean_ms:.1f}ms max={self.max_ms:.1f}ms  "
            f"polls={self.polls} ({self.polls / max(self.jobs, 1):.1f}/job)"
            + (f"\n  first errors: {self.errors[:3]}" if self.errors else "")
        )


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    polls: int = 0
    errors: list[str] = field(default_factory=list)


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    resp.raise_for_status()
    data: dict[str, Any] = await resp.json(content_type=None)
    return data


async def _one_job(
    session: aiohttp.ClientSession, target: Target, job_input: dict[str, Any],
    poll_interval: float, tally: _Tally,
) -> None:  # fmt: skip
    """Submit, then poll every `poll_interval` until terminal; record latency."""
    t0 = time.perf_counter()
    async with session.post(target.submit_url, json=target.body(job_input)) as resp:
        job_id = (await _json(resp))[target.id_key]
    url = target.status_url.format(id=job_id)
    while True:
        await asyncio.sleep(poll_interval)
        async with session.get(url) as resp:
            status = (await _json(resp))[target.status_key]
        tally.polls += 1
        if status in target.done:
            tally.latencies.append(time.perf_counter() - t0)
            return
        if status in target.failed:
            tally.failed += 1
            return


async def _client(
    session: aiohttp.ClientSession, target: Target, indices: Iterator[int],
    payload: PayloadFn, poll_interval: float, tally: _Tally,
) -> None:  # fmt: skip
    for i in indices:  # shared iterator: clients pull the next job when free
        try:
            await _one_job(session, target, payload(i), poll_interval, tally)
        except (TimeoutError, aiohttp.ClientError, KeyError) as exc:
            tally.failed += 1
            if len(tally.errors) < 10:
                tally.errors.append(repr(exc))


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    idx = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[idx]


async def run(
    target: Target, jobs: int, concurrency: int, poll_interval: float = 0.05,
    payload: PayloadFn = default_payload, timeout_s: float = 60.0,
) -> Result:  # fmt: skip
    tally = _Tally()
    indices = iter(range(jobs))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=target.headers
    ) as session:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _client(session, target, indices, payload, poll_interval, tally)
                for _ in range(concurrency)
            )
        )
        wall = time.perf_counter() - t0
    return _result(tally, jobs, concurrency, poll_interval, wall)


def _result(tally: _Tally, jobs: int, concurrency: int, poll: float, wall: float) -> Result:
    ms = sorted(x * 1000 for x in tally.latencies)
    return Result(
        jobs=jobs,
        concurrency=concurrency,
        poll_interval_s=poll,
        completed=len(ms),
        failed=tally.failed,
        wall_s=wall,
        jobs_per_s=len(ms) / wall if wall else 0.0,
        p50_ms=_pct(ms, 0.50),
        p99_ms=_pct(ms, 0.99),
        mean_ms=statistics.fmean(ms) if ms else float("nan"),
        max_ms=ms[-1] if ms else float("nan"),
        polls=tally.polls,
        errors=tally.errors,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=["celery", "runpod"], default="celery")
    p.add_argument("--base-url", default="http://127.0.0.1:8100")
    p.add_argument("--endpoint", default="default", help="runpod endpoint id")
    p.add_argument("--api-key", default=None, help="runpod bearer token")
    p.add_argument("-n", "--jobs", type=int, default=2000)
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("--poll-interval", type=float, default=0.05, help="seconds (default 0.05)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.target == "celery":
        target = celery_target(args.base_url)
    else:
        target = runpod_target(args.base_url, args.endpoint, args.api_key)
    result = asyncio.run(run(target, args.jobs, args.concurrency, args.poll_interval))
    print(json.dumps(result.as_dict()) if args.json else result.summary())


if __name__ == "__main__":
    main()


__all__ = ["Result", "Target", "celery_target", "default_payload", "run", "runpod_target"]
