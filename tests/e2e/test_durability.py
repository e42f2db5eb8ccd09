"""kill -9 at any moment loses no accepted job: every one still reaches a terminal state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FAST_ENV, handler_path, wait_status


def statuses(url: str, ep: str, ids: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=url, timeout=10) as c:
        return {i: c.get(f"/v2/{ep}/status/{i}").json().get("status", "?") for i in ids}


def wait_all(url: str, ep: str, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        now = statuses(url, ep, ids)
        if all(s in ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED") for s in now.values()):
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.3)


def test_server_killed_mid_load_loses_nothing(serve: Any) -> None:
    s = serve("sleeps")
    with httpx.Client(base_url=s.url, timeout=10) as c:
        ids = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 0.2}}).json()["id"]
            for _ in range(30)
        ]
    wait_status(s.url, "sleeps", ids[2], {"COMPLETED"})
    s.kill9()  # the API, its worker and the handler child, all at once
    s.start()
    s.wait_workers(1)
    final = wait_all(s.url, "sleeps", ids, timeout=60)
    assert set(final.values()) == {"COMPLETED"}, final


def start_worker(url: str, ep: str, token: str, wid: str, log: Path) -> subprocess.Popen[bytes]:
    """An ``anypod worker`` for endpoint ``ep`` running ``tests/handlers/sleeps.py``."""
    env = {**os.environ, **FAST_ENV, "ANYPOD_WORKER_TOKEN": token}
    args = [
        sys.executable,
        "-m",
        "anypod",
        "worker",
        handler_path("sleeps"),
        "--server",
        url,
        "--endpoint",
        ep,
        "--worker-id",
        wid,
        "--ping-interval",
        "0.5",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def mint_token(database_url: str, ep: str) -> str:
    """A worker token for ``ep``, minted the way a user would: ``anypod worker-env``."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "anypod",
            "worker-env",
            "--endpoint",
            ep,
            "--database",
            database_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return env["RUNPOD_AI_API_KEY"]


def test_worker_killed_mid_job_job_is_requeued_and_finishes(serve: Any, tmp_path: Path) -> None:
    s = serve(None, endpoint="sleeps", workers=0)
    token = mint_token(f"sqlite:///{tmp_path / 'anypod.db'}", "sleeps")
    first = start_worker(s.url, "sleeps", token, "w-first", tmp_path / "w1.log")
    second = None
    try:
        job = httpx.post(f"{s.url}/v2/sleeps/run", json={"input": {"seconds": 2}}).json()
        running = wait_status(s.url, "sleeps", job["id"], {"IN_PROGRESS"})
        assert running["workerId"] == "w-first"
        os.killpg(first.pid, signal.SIGKILL)
        second = start_worker(s.url, "sleeps", token, "w-second", tmp_path / "w2.log")
        done = wait_status(s.url, "sleeps", job["id"], {"COMPLETED", "FAILED"}, timeout=30)
        assert done["status"] == "COMPLETED" and done["workerId"] == "w-second"
        assert done["retries"] == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait(10)


def test_job_fails_with_reason_when_attempts_run_out(serve: Any, tmp_path: Path) -> None:
    config = tmp_path / "anypod.toml"
    config.write_text("[endpoints.sleeps]\nmax_attempts = 1\n")
    s = serve(None, workers=0, extra=["--config", str(config)])
    token = mint_token(f"sqlite:///{tmp_path / 'anypod.db'}", "sleeps")
    worker = start_worker(s.url, "sleeps", token, "w-doomed", tmp_path / "w.log")
    try:
        job = httpx.post(f"{s.url}/v2/sleeps/run", json={"input": {"seconds": 30}}).json()
        wait_status(s.url, "sleeps", job["id"], {"IN_PROGRESS"})
        os.killpg(worker.pid, signal.SIGKILL)
        failed = wait_status(s.url, "sleeps", job["id"], {"FAILED"}, timeout=20)
        assert "w-doomed stopped responding" in failed["error"]
        assert "attempt 1 of 1" in failed["error"]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
