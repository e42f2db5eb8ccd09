"""An unmodified ``runpod.serverless.start`` worker, configured by ``anypod worker-env``.

The server runs API-only (``--workers 0``); the worker is ``python handler.py`` in a subprocess
with the ``RUNPOD_*`` lines ``anypod worker-env`` prints, exactly as a container would get them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HANDLERS, ROOT, Served, wait_status

Serve = Callable[..., Served]
EP = "rp"
RUNPOD_VERSION = tuple(int(p) for p in version("runpod").split(".")[:2])

PLAIN = """
import asyncio
import os

import runpod


async def handler(job):
    inp = job["input"]
    if inp.get("sleep"):
        for _ in range(int(inp["sleep"] * 10)):
            await asyncio.sleep(0.1)
    if inp.get("raise"):
        raise ValueError(inp["raise"])
    return {"echo": inp, "job_id": job["id"], "pod": os.environ.get("RUNPOD_POD_ID")}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
"""

# --- processes -------------------------------------------------------------------------------


def _procs_under(root: Path) -> list[int]:
    """Processes (not this one) whose working directory is inside ``root``: ones we started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append(int(entry.name))
    return found


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def _reap(tmp_path: Path) -> Iterator[None]:
    """Set up before ``serve`` so it is torn down after it: nothing started here may outlive it.

    (It also kills ``anypod serve``'s own worker processes when the server leaves them behind;
    ``test_serve_leaves_no_worker_process_behind`` reports that on its own.)
    """
    yield
    for _ in range(3):
        _kill_all(_procs_under(tmp_path.resolve()))
        time.sleep(0.1)


@pytest.fixture
def serve(serve: Serve) -> Iterator[Serve]:
    """conftest's ``serve``, with each server (and its process group) killed at teardown.

    A graceful stop waits out the runpod worker's held job-take/job-stop long-polls, seconds per
    test; ``test_serve_leaves_no_worker_process_behind`` stops its server gracefully itself.
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


class RunpodWorker:
    """``python handler.py`` with the worker env, in its own process group."""

    def __init__(self, script: Path, env: dict[str, str], cwd: Path) -> None:
        self.log_path = cwd / f"worker-{script.stem}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def database_of(served: Served) -> str:
    return served.args[served.args.index("--database") + 1]


def worker_env(served: Served, endpoint: str = EP) -> dict[str, str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "anypod",
            "worker-env",
            "--endpoint",
            endpoint,
            "--server",
            served.url,
            "--database",
            database_of(served),
        ],
        env=served.env,
        cwd=served.cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["RUNPOD_AI_API_KEY"]
    assert "/job-take/" in env["RUNPOD_WEBHOOK_GET_JOB"]
    return env


@pytest.fixture
def start_worker(serve: Serve, tmp_path: Path) -> Iterator[Callable[..., tuple[Served, Any]]]:
    """``served, worker = start_worker(script)``: an API-only server plus one runpod worker."""
    workers: list[RunpodWorker] = []

    def start(script: Path) -> tuple[Served, RunpodWorker]:
        served = serve(None, endpoint=EP, workers=0)
        env = {
            **os.environ,
            **worker_env(served),
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
        }
        worker = RunpodWorker(script, env, tmp_path)
        workers.append(worker)
        wait_worker_seen(served, worker)
        return served, worker

    yield start
    for worker in workers:
        worker.kill()


def health(served: Served) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{served.url}/v2/{EP}/health", timeout=5).json()
    return body


def wait_worker_seen(served: Served, worker: RunpodWorker, timeout: float = 12) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), f"runpod worker exited:\n{worker.logs()}"
        w = health(served)["workers"]
        if w["idle"] + w["running"] >= 1:
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker never showed in /health: {health(served)}\n{worker.logs()}")


def copied(tmp_path: Path, name: str) -> Path:
    """A handler file from tests/handlers, unchanged, run from tmp_path.

    ``python tests/handlers/x.py`` puts tests/handlers first on sys.path, where concurrent.py
    shadows the stdlib ``concurrent`` package and ``import runpod`` fails; a copy avoids that.
    """
    return inline(tmp_path, name, (HANDLERS / f"{name}.py").read_text())


def inline(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def run(served: Served, inp: dict[str, Any]) -> str:
    reply = httpx.post(f"{served.url}/v2/{EP}/run", json={"input": inp}, timeout=5)
    assert reply.status_code == 200, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def wait_for(served: Served, job_id: str, statuses: set[str], timeout: float = 10) -> Any:
    return wait_status(served.url, EP, job_id, statuses, timeout=timeout)


def drain_stream(served: Served, job_id: str, timeout: float = 12) -> tuple[list[Any], str]:
    """Poll /stream until the job is terminal and drained; every chunk, in arrival order."""
    chunks: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{served.url}/v2/{EP}/stream/{job_id}", timeout=5).json()
        chunks += [item["output"] for item in body["stream"]]
        if body["status"] not in {"IN_QUEUE", "IN_PROGRESS"} and not body["stream"]:
            return chunks, body["status"]
        time.sleep(0.1)
    raise TimeoutError(f"stream of {job_id} never ended; so far {chunks}")


# --- tests -----------------------------------------------------------------------------------


def test_plain_handler_jobs_complete(start_worker: Any, tmp_path: Path) -> None:
    served, worker = start_worker(inline(tmp_path, "plain", PLAIN))
    ids = [run(served, {"i": i, "s": "é"}) for i in range(3)]
    for job_id in ids:
        body = wait_for(served, job_id, {"COMPLETED", "FAILED"})
        assert body["status"] == "COMPLETED", (body, worker.logs())
        out = body["output"]
        assert out["job_id"] == job_id and out["echo"]["s"] == "é"
        assert body["workerId"] == out["pod"]
    sync = httpx.post(
        f"{served.url}/v2/{EP}/runsync", json={"input": {"sync": 1}}, timeout=12
    ).json()
    assert sync["status"] == "COMPLETED" and sync["output"]["echo"] == {"sync": 1}
    failed = wait_for(served, run(served, {"raise": "bad input"}), {"FAILED"})
    assert "bad input" in str(failed["error"])
    assert worker.alive()


def test_streaming_handler_file(start_worker: Any, tmp_path: Path) -> None:
    """tests/handlers/streaming.py as is: anypod.progress + yield, under an unmodified worker."""
    served, worker = start_worker(copied(tmp_path, "streaming"))
    job_id = run(served, {"n": 4, "delay": 0.2})
    chunks, status = drain_stream(served, job_id)
    final = wait_status(served.url, EP, job_id, {"COMPLETED", "FAILED"})
    assert status == "COMPLETED", (final, worker.logs())
    assert chunks == [{"chunk": i} for i in range(4)]
    assert final["output"] == [{"chunk": i} for i in range(4)]


def test_progress_update_visible_while_in_progress(start_worker: Any, tmp_path: Path) -> None:
    served, worker = start_worker(copied(tmp_path, "runpod_progress"))
    job_id = run(served, {"seconds": 2})
    deadline = time.monotonic() + 10
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = httpx.get(f"{served.url}/v2/{EP}/status/{job_id}", timeout=5).json()
        if seen["status"] != "IN_QUEUE" and "output" in seen:
            break
        time.sleep(0.05)
    assert seen["status"] == "IN_PROGRESS", (seen, worker.logs())
    assert seen["output"] == "halfway"
    final = wait_for(served, job_id, {"COMPLETED", "FAILED"})
    assert final["status"] == "COMPLETED" and final["output"] == {"done": True}, final


def wait_health(
    served: Served, check: Callable[[dict[str, Any]], bool], timeout: float = 5
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    h = health(served)
    while not check(h) and time.monotonic() < deadline:
        time.sleep(0.1)
        h = health(served)
    return h


@pytest.mark.skipif(RUNPOD_VERSION < (1, 10), reason="job-stop channel needs runpod >= 1.10")
def test_cancel_in_progress_reaches_worker_and_health_counts_it(
    start_worker: Any, tmp_path: Path
) -> None:
    served, worker = start_worker(inline(tmp_path, "plain", PLAIN))
    job_id = run(served, {"sleep": 30})
    wait_status(served.url, EP, job_id, {"IN_PROGRESS"}, timeout=10)
    # The worker holds the job: /health counts it as running (job counts are cached 1 s).
    h = wait_health(served, lambda h: h["workers"]["running"] == h["jobs"]["inProgress"] == 1)
    assert h["workers"]["running"] == 1 and h["workers"]["idle"] == 0, h
    assert h["jobs"]["inProgress"] == 1 and h["jobs"]["inQueue"] == 0, h

    reply = httpx.post(f"{served.url}/v2/{EP}/cancel/{job_id}", timeout=5)
    assert reply.status_code == 200 and reply.json()["status"] == "CANCELLED"
    # The stop reaches the worker over job-stop: its task is cancelled, and it logs so.
    deadline = time.monotonic() + 8
    while "Job stopped." not in worker.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Job stopped." in worker.logs(), worker.logs()
    # The worker keeps serving: the next job runs at once, not after the 30 s sleep.
    nxt = wait_for(served, run(served, {"after": 1}), {"COMPLETED", "FAILED"}, timeout=8)
    assert nxt["status"] == "COMPLETED" and nxt["output"]["echo"] == {"after": 1}, nxt
    assert wait_status(served.url, EP, job_id, {"CANCELLED"}, timeout=1)["status"] == "CANCELLED"
    assert worker.alive()
    h = wait_health(served, lambda h: h["workers"]["idle"] == h["jobs"]["completed"] == 1)
    assert h["workers"]["idle"] == 1 and h["workers"]["running"] == 0, h
    assert h["jobs"]["completed"] == 1 and h["jobs"]["inProgress"] == 0, h


def test_serve_leaves_no_worker_process_behind(serve: Serve, tmp_path: Path) -> None:
    """``anypod serve``'s own workers must go when the server is stopped (SIGTERM to its group)."""
    served = serve("echo", workers=1)
    assert (
        httpx.post(f"{served.url}/v2/echo/runsync", json={"input": {}}, timeout=10).json()["status"]
        == "COMPLETED"
    )
    served.stop()
    deadline = time.monotonic() + 3
    while _procs_under(tmp_path.resolve()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {
        pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for pid in _procs_under(tmp_path.resolve())
    }
    lines = [
        ln
        for ln in served.logs().splitlines()
        if any(k in ln for k in ("supervisor", "stopping", "Shutting", "Finished"))
    ]
    assert not left, f"processes outlived the server: {left}\n" + "\n".join(lines)
