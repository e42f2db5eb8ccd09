"""PostgreSQL goes away mid-load: 503 JSON (no hang), reconnect by itself, nothing lost. Also
when it goes silent (a partition: packets dropped, nothing reset): 503 within seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.test_durability import wait_all

PROXY = Path(__file__).resolve().parents[1] / "tcp_proxy.py"


class Cut:
    """A TCP proxy in front of PostgreSQL; ``down()`` kills it, ``up()`` brings it back;
    ``freeze()`` stops it (SIGSTOP: connections stay open, bytes stop), ``thaw()`` resumes."""

    def __init__(self, database_url: str) -> None:
        self.target = urlsplit(database_url)
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """``database_url``, reached through the proxy."""
        userinfo, at, _ = self.target.netloc.rpartition("@")
        return urlunsplit(self.target._replace(netloc=f"{userinfo}{at}127.0.0.1:{self.port}"))

    def up(self) -> None:
        host, port = self.target.hostname or "127.0.0.1", self.target.port or 5432
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY), str(self.port), host, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def down(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


@pytest.fixture
def cut(pg_url: str) -> Iterator[Cut]:
    proxy = Cut(pg_url)
    proxy.up()
    yield proxy
    proxy.down()


def test_database_outage_mid_load(serve: Any, cut: Cut) -> None:
    s = serve("sleeps", extra=["--database", cut.url])
    with httpx.Client(base_url=s.url, timeout=15) as c:
        before = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 0.3}}).json()["id"]
            for _ in range(10)
        ]
        cut.down()
        started = time.monotonic()
        refused = c.post("/v2/sleeps/run", json={"input": {}})
        assert time.monotonic() - started < 10  # no hang
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/json"
        assert "error" in refused.json() and "Traceback" not in refused.text
        assert c.get("/health").status_code == 503
        time.sleep(2)  # the worker keeps retrying meanwhile
        cut.up()
        deadline = time.monotonic() + 20
        while c.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        after = [
            c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"] for _ in range(5)
        ]
    final = wait_all(s.url, "sleeps", before + after, timeout=60)
    assert set(final.values()) == {"COMPLETED"}, final


def test_silent_partition_answers_503_within_seconds(serve: Any, cut: Cut) -> None:
    s = serve("sleeps", extra=["--database", cut.url])
    with httpx.Client(base_url=s.url, timeout=30) as c:
        before = c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"]
        cut.freeze()
        started = time.monotonic()
        health = c.get("/health")
        assert health.status_code == 503, health.text
        assert time.monotonic() - started < 3
        started = time.monotonic()
        refused = c.post("/v2/sleeps/run", json={"input": {}})
        assert refused.status_code == 503, refused.text
        assert time.monotonic() - started < 6
        cut.thaw()
        deadline = time.monotonic() + 20
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline, s.logs()
            time.sleep(0.2)
        after = c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"]
    final = wait_all(s.url, "sleeps", [before, after], timeout=60)
    assert set(final.values()) == {"COMPLETED"}, final
