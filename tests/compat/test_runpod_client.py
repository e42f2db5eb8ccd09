"""The unmodified ``runpod`` client (``Endpoint``, ``AsyncioEndpoint``) against anypod.

Only the base URL changes: ``runpod.endpoint_url_base = f"{url}/v2"``; any API key is accepted
because the test servers run without API keys.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import runpod

from tests.conftest import Served, wait_status

Serve = Callable[..., Served]
ServeMany = Callable[[list[str]], Served]
KEY = "anything"


@pytest.fixture(autouse=True)
def _reap(tmp_path: Path) -> Iterator[None]:
    """Set up before ``serve``, so torn down after it: kill whatever still runs in tmp_path.

    The servers run with cwd=tmp_path, and so do the workers they start.
    """
    yield
    root = tmp_path.resolve()
    for _ in range(3):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
                if cwd == str(root) or cwd.startswith(f"{root}/"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue
        time.sleep(0.1)


@pytest.fixture
def serve(serve: Serve) -> Iterator[Serve]:
    """conftest's ``serve``, with each server and its workers killed outright at teardown.

    A graceful stop waits out held long-polls (seconds per test); these tests are about the
    client API, not about shutdown.
    """
    started: list[Served] = []

    def start(*args: Any, **kwargs: Any) -> Served:
        served = serve(*args, **kwargs)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.proc is not None and served.proc.poll() is None:
            served.kill9()


@pytest.fixture(autouse=True)
def _base_url() -> Iterator[None]:
    """Each test points the client at its own server; the module default is restored after."""
    before = runpod.endpoint_url_base
    yield
    runpod.endpoint_url_base = before


def endpoint(served: Served, name: str) -> runpod.Endpoint:
    runpod.endpoint_url_base = f"{served.url}/v2"
    return runpod.Endpoint(name, api_key=KEY)


def test_run_status_output(serve: Serve) -> None:
    served = serve("echo", workers=1)
    ep = endpoint(served, "echo")
    job = ep.run({"x": 1, "s": "é"})
    assert isinstance(job.job_id, str) and job.job_id
    assert job.status() in {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert job.output(timeout=10) == {"echo": {"x": 1, "s": "é"}, "job_id": job.job_id}
    assert job.status() == "COMPLETED"


def test_run_sync_completed(serve: Serve) -> None:
    served = serve("echo", workers=1)
    ep = endpoint(served, "echo")
    out = ep.run_sync({"hello": "world"}, timeout=10)
    assert out["echo"] == {"hello": "world"}
    assert out["job_id"].startswith("sync-")


def test_run_sync_failed_returns_none(serve: Serve) -> None:
    served = serve("raises", workers=1)
    ep = endpoint(served, "raises")
    # The SDK returns resp.get("output") for any final state, so a FAILED job gives None.
    assert ep.run_sync({"message": "nope"}, timeout=10) is None
    # ... and the error really is there for whoever asks /status.
    job = ep.run({"message": "nope"})
    body = wait_status(served.url, "raises", job.job_id, {"FAILED"}, timeout=10)
    assert "nope" in str(body["error"])
    assert job.status() == "FAILED"
    assert job.output(timeout=5) is None


def test_run_passthrough_form_and_s3config(serve_many: ServeMany) -> None:
    served = serve_many(["passthrough", "echo"])
    ep = endpoint(served, "passthrough")
    s3 = {
        "accessId": "AK",
        "accessSecret": "SK",
        "bucketName": "b",
        "endpointUrl": "http://s3.local",
    }
    hook = "http://127.0.0.1:9/never"  # unreachable; delivery failures must not affect the job
    job = ep.run(
        {
            "input": {"n": 1},  # non-empty: the SDK wraps a body whose "input" is falsy
            "webhook": hook,
            "s3Config": s3,
            "policy": {"executionTimeout": 60_000, "ttl": 600_000},
        }
    )
    out = job.output(timeout=10)
    assert out == {"s3Config": s3, "webhook": hook}
    assert job.status() == "COMPLETED"
    # The passthrough form did not wrap the whole request as the input.
    sync_out = endpoint(served, "echo").run_sync(
        {"input": {"k": 1}, "policy": {"ttl": 600_000}}, timeout=10
    )
    assert sync_out["echo"] == {"k": 1}


def test_stream_collects_all_chunks_in_order(serve: Serve) -> None:
    served = serve("streaming", workers=1)
    ep = endpoint(served, "streaming")
    job = ep.run({"n": 5, "delay": 0.25})
    chunks = list(job.stream())
    assert chunks == [{"chunk": i} for i in range(5)]
    assert job.status() == "COMPLETED"
    # Drained: nothing left for a second reader.
    again = httpx.get(f"{served.url}/v2/streaming/stream/{job.job_id}", timeout=5).json()
    assert again["stream"] == []
    assert again["status"] == "COMPLETED"


def test_cancel_sleeping_job(serve: Serve) -> None:
    served = serve("sleeps", workers=1)
    ep = endpoint(served, "sleeps")
    job = ep.run({"seconds": 30})
    wait_status(served.url, "sleeps", job.job_id, {"IN_PROGRESS"}, timeout=10)
    reply = job.cancel()
    assert reply["id"] == job.job_id
    assert reply["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"
    # The worker is freed for the next job.
    assert ep.run_sync({"seconds": 0}, timeout=12)["slept"] == 0


def test_cancel_queued_job(serve: Serve) -> None:
    served = serve(None, endpoint="idle", workers=0)
    ep = endpoint(served, "idle")
    job = ep.run({"a": 1})
    assert job.status() == "IN_QUEUE"
    assert job.cancel()["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"


def test_health_shape(serve: Serve) -> None:
    served = serve("echo", workers=1)
    ep = endpoint(served, "echo")
    assert ep.run_sync({"n": 1}, timeout=10)["echo"] == {"n": 1}
    health = ep.health()
    assert set(health) >= {"jobs", "workers"}
    assert set(health["jobs"]) >= {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert set(health["workers"]) >= {"idle", "running"}
    assert all(isinstance(v, int) for v in health["jobs"].values())
    assert all(isinstance(v, int) for v in health["workers"].values())
    assert health["jobs"]["completed"] >= 1
    assert health["jobs"]["inQueue"] == 0


def test_purge_queue(serve: Serve) -> None:
    served = serve(None, endpoint="pq", workers=0)
    ep = endpoint(served, "pq")
    jobs = [ep.run({"i": i}) for i in range(3)]
    assert ep.health()["jobs"]["inQueue"] == 3
    reply = ep.purge_queue()
    assert reply == {"removed": 3, "status": "completed"}
    assert ep.health()["jobs"]["inQueue"] == 0
    for job in jobs:
        assert job.status() not in {"IN_QUEUE", "IN_PROGRESS"}
    assert ep.purge_queue()["removed"] == 0


def test_unknown_job_status_is_404(serve: Serve) -> None:
    served = serve(None, endpoint="nf", workers=0)
    endpoint(served, "nf")
    r = httpx.get(
        f"{served.url}/v2/nf/status/no-such-job",
        timeout=5,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")


async def test_asyncio_endpoint_run_status_output(serve: Serve) -> None:
    served = serve("echo", workers=1)
    runpod.endpoint_url_base = f"{served.url}/v2"
    async with aiohttp.ClientSession() as session:
        ep = runpod.AsyncioEndpoint("echo", session, api_key=KEY)
        job = await ep.run({"async": True})
        assert job.job_id
        assert await job.status() in {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
        out = await job.output(timeout=10)
        assert out == {"echo": {"async": True}, "job_id": job.job_id}
        assert await job.status() == "COMPLETED"


async def test_asyncio_endpoint_cancel(serve: Serve) -> None:
    served = serve("sleeps", workers=1)
    runpod.endpoint_url_base = f"{served.url}/v2"
    async with aiohttp.ClientSession() as session:
        ep = runpod.AsyncioEndpoint("sleeps", session, api_key=KEY)
        job = await ep.run({"seconds": 30})
        deadline = time.monotonic() + 10
        while await job.status() != "IN_PROGRESS" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        reply = await job.cancel()
        assert reply["id"] == job.job_id and reply["status"] == "CANCELLED"
        assert await job.status() == "CANCELLED"


async def test_asyncio_endpoint_stream(serve: Serve) -> None:
    served = serve("async_gen", workers=1)
    runpod.endpoint_url_base = f"{served.url}/v2"
    async with aiohttp.ClientSession() as session:
        ep = runpod.AsyncioEndpoint("async_gen", session, api_key=KEY)
        job = await ep.run({"words": ["w1", "w2", "w3", "w4"]})
        chunks: list[Any] = [c async for c in job.stream()]
        assert chunks == ["w1", "w2", "w3", "w4"]
        assert await job.status() == "COMPLETED"
