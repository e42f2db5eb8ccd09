"""Shared fixtures: real servers started as subprocesses on one-behaviour handler files
(``tests/handlers/<behaviour>.py``), and PostgreSQL databases (``tests/postgres.py``)."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = Path(__file__).resolve().parent / "handlers"

pytest_plugins = ["tests.postgres"]

# Short windows so lapsed leases, timeouts and sweeps happen within a test's patience.
FAST_ENV = {
    "ANYPOD_LEASE_SECONDS": "3",
    "ANYPOD_PING_INTERVAL_SECONDS": "0.5",
    "ANYPOD_SWEEP_INTERVAL_SECONDS": "0.2",
    "ANYPOD_TAKE_HOLD_SECONDS": "5",
    "ANYPOD_LOG_LEVEL": "INFO",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run @pytest.mark.slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("ANYPOD_", "RUNPOD_")):
            monkeypatch.delenv(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handler_path(name: str) -> str:
    return str(HANDLERS / f"{name}.py")


@dataclasses.dataclass
class Served:
    """An ``anypod serve`` subprocess and how to reach it."""

    args: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Served:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float, workers: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.logs()}")
            try:
                body = httpx.get(f"{self.url}/health", timeout=1).json()
                if body.get("store") and (workers is None or body["workers"] >= workers):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.logs()}")

    def wait_workers(self, n: int, timeout: float = 30.0) -> None:
        self.wait_ready(timeout, workers=n)

    def kill9(self) -> None:
        """kill -9 the server and every process of its group (its workers too)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: ``serve("echo", workers=1, extra=[...], env={...})`` → a started :class:`Served`."""
    started: list[Served] = []

    def start(
        handler: str | None,
        *,
        workers: int = 1,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        endpoint: str | None = None,
    ) -> Served:
        port = free_port()
        args = [sys.executable, "-m", "anypod", "serve"]
        if handler:
            args.append(handler_path(handler) if "/" not in handler else handler)
        if endpoint:
            args += ["--endpoint", endpoint]
        args += [
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--database",
            f"sqlite:///{tmp_path / 'anypod.db'}",
            *(extra or []),
        ]
        full_env = {**os.environ, **FAST_ENV, **(env or {})}
        served = Served(args, full_env, tmp_path, port, tmp_path / f"serve-{port}.log")
        started.append(served)
        served.start()
        if handler and workers:
            served.wait_workers(workers)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def serve_many(serve: Callable[..., Served], tmp_path: Path) -> Callable[[list[str]], Served]:
    """Factory: ``serve_many(["echo", "raises"])`` → one started :class:`Served` with an endpoint
    per handler file, named after it, one worker each; returns once every worker is up."""

    def start(handlers: list[str]) -> Served:
        config = tmp_path / f"anypod-{'-'.join(handlers)}.toml"
        config.write_text(
            "".join(f'[endpoints.{h}]\nhandler = "{handler_path(h)}"\n\n' for h in handlers)
        )
        served = serve(None, extra=["--config", str(config)])
        served.wait_workers(len(handlers))
        return served

    return start


def wait_status(
    url: str,
    endpoint: str,
    job_id: str,
    statuses: set[str],
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        reply = httpx.get(f"{url}/v2/{endpoint}/status/{job_id}", timeout=5, headers=headers)
        body = reply.json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never reached {statuses}; last: {body}")
