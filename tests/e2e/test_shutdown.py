"""Redeploys and shutdown: a stop signal lets running jobs finish and report, a killed server
leaves no processes behind, a killed idle worker claims nothing, a wrong token stops a worker."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_ENV, Served, handler_path, wait_status


def submit(url: str, endpoint: str, inp: dict[str, Any]) -> str:
    reply = httpx.post(f"{url}/v2/{endpoint}/run", json={"input": inp}, timeout=10)
    assert reply.status_code == 200, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def job_row(db: Path, job_id: str) -> tuple[str, bytes | None]:
    with sqlite3.connect(db) as conn:
        status, output = conn.execute(
            "SELECT status, output FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    return status, output


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    "how",
    ["SIGTERM to the group", "SIGINT to the group", "SIGTERM to the server"],
)
def test_stop_signal_lets_the_running_job_finish(serve: Any, tmp_path: Path, how: str) -> None:
    s: Served = serve("sleeps")
    assert s.proc is not None
    job = submit(s.url, "sleeps", {"seconds": 2})
    wait_status(s.url, "sleeps", job, {"IN_PROGRESS"})
    sig = signal.SIGINT if "SIGINT" in how else signal.SIGTERM
    started = time.monotonic()
    if "group" in how:
        os.killpg(s.proc.pid, sig)
    else:
        os.kill(s.proc.pid, sig)
    s.proc.wait(20)
    took = time.monotonic() - started
    status, output = job_row(tmp_path / "anypod.db", job)
    assert status == "COMPLETED" and output is not None and b'"slept":2' in output, s.logs()
    assert took < 10, f"{how}: exit took {took:.1f} s"
    deadline = time.monotonic() + 5
    while group_alive(s.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(s.proc.pid), "workers outlived their server"


def test_kill_9_of_the_server_leaves_no_workers(serve: Any, tmp_path: Path) -> None:
    s: Served = serve("sleeps", workers=2)
    assert s.proc is not None
    with sqlite3.connect(tmp_path / "anypod.db") as conn:  # embedded tokens live in memory
        assert conn.execute("SELECT COUNT(*) FROM worker_tokens").fetchone() == (0,)
    submit(s.url, "sleeps", {"seconds": 30})  # one worker and its handler are busy
    time.sleep(1)
    os.kill(s.proc.pid, signal.SIGKILL)  # the server alone
    s.proc.wait(10)
    deadline = time.monotonic() + 5
    while group_alive(s.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(s.proc.pid), "orphaned workers or handler processes"


def start_worker(url: str, token: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "anypod", "worker", handler_path("echo"), "--server", url]
    args += ["--endpoint", "echo", "--worker-id", worker_id]
    env = {**os.environ, **FAST_ENV, "ANYPOD_WORKER_TOKEN": token}
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def mint(tmp_path: Path) -> str:
    args = [sys.executable, "-m", "anypod", "worker-env", "--endpoint", "echo"]
    args += ["--database", f"sqlite:///{tmp_path / 'anypod.db'}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RUNPOD_AI_API_KEY="))
    return line.split("=", 1)[1].strip("'\"")


def test_a_killed_idle_worker_claims_nothing(serve: Any, tmp_path: Path) -> None:
    s: Served = serve(None, endpoint="echo")
    token = mint(tmp_path)
    w1 = start_worker(s.url, token, "w1", tmp_path / "w1.log")
    try:
        time.sleep(3)  # w1 is up, holding a job-take
        w1.kill()
        w1.wait(5)
        job = submit(s.url, "echo", {"n": 1})
        time.sleep(0.5)
        body = httpx.get(f"{s.url}/v2/echo/status/{job}", timeout=5).json()
        assert body["status"] == "IN_QUEUE", body
        w2 = start_worker(s.url, token, "w2", tmp_path / "w2.log")
        try:
            done = wait_status(s.url, "echo", job, {"COMPLETED"}, timeout=20)
            assert done["output"]["echo"] == {"n": 1}
        finally:
            w2.terminate()
            w2.wait(20)
    finally:
        if w1.poll() is None:
            w1.kill()


def test_a_worker_with_a_wrong_token_exits_saying_why(serve: Any, tmp_path: Path) -> None:
    s: Served = serve(None, endpoint="echo")
    worker = start_worker(s.url, "apw_wrong", "w1", tmp_path / "wrong.log")
    try:
        code = worker.wait(20)
    finally:
        if worker.poll() is None:
            worker.kill()
    said = (tmp_path / "wrong.log").read_text()
    assert code == 2 and "refused this worker" in said and "token" in said, said
