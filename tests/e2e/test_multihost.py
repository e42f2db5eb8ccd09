"""Two API replicas on one host, workers on another (a network namespace made here); kill -9
one replica mid-load: every accepted job reaches exactly one terminal state, none is lost,
none runs twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_ENV, free_port, handler_path
from tests.e2e.test_durability import mint_token

SUBNET = "10.231.{}.{}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def gpu_host() -> Iterator[tuple[str, str]]:
    """A namespace for the GPU host, linked by veth; yields (namespace, API host address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    tag = uuid.uuid4().hex[:6]
    ns, here, there = f"ap-gpu-{tag}", f"apv{tag}a", f"apv{tag}b"
    octet = str(int(tag[:2], 16) % 200 + 20)
    api_ip, gpu_ip = SUBNET.format(octet, 1), SUBNET.format(octet, 2)
    try:
        _ip("netns", "add", ns)
    except subprocess.CalledProcessError:
        pytest.skip("cannot create network namespaces here")
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", ns)
        _ip("addr", "add", f"{api_ip}/24", "dev", here)
        _ip("link", "set", here, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{gpu_ip}/24", "dev", there)
        _ip("netns", "exec", ns, "ip", "link", "set", there, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, api_ip
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.all: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                args,
                env={**os.environ, **FAST_ENV, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.all.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_ready(url: str, workers: int = 0, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/health", timeout=2).json()
            if body.get("store") and body.get("workers", 0) >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


def submit(urls: list[str], body: dict[str, object]) -> str | None:
    """Submit to ``record`` on the first replica that answers, as a client behind a load
    balancer would."""
    for url in urls:
        try:
            return str(httpx.post(f"{url}/v2/record/run", json=body, timeout=5).json()["id"])
        except (httpx.HTTPError, KeyError):
            continue
    return None


def test_replica_killed_mid_load(gpu_host: tuple[str, str], pg_url: str, tmp_path: Path) -> None:
    ns, api_ip = gpu_host
    procs = Procs(tmp_path)
    ports = [free_port(), free_port()]
    urls = [f"http://{api_ip}:{p}" for p in ports]
    record = tmp_path / "executions.txt"
    try:
        replicas = [
            procs.start(
                f"api{i}",
                [
                    sys.executable,
                    "-m",
                    "anypod",
                    "server",
                    "--endpoint",
                    "record",
                    "--host",
                    api_ip,
                    "--port",
                    str(port),
                    "--database",
                    pg_url,
                    "--insecure",
                ],
                {},
            )
            for i, port in enumerate(ports)
        ]
        for url in urls:
            wait_ready(url)
        token = mint_token(pg_url, "record")
        for w, order in enumerate([urls, urls[::-1]]):
            servers = [arg for url in order for arg in ("--server", url)]
            procs.start(
                f"worker{w}",
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-m",
                    "anypod",
                    "worker",
                    handler_path("record"),
                    *servers,
                    "--endpoint",
                    "record",
                    "--token",
                    token,
                    "--worker-id",
                    f"gpu-{w}",
                    "--concurrency",
                    "4",
                    "--ping-interval",
                    "0.5",
                ],
                {"ANYPOD_WORKER_TOKEN": token},
            )
        wait_ready(urls[1], workers=2)
        body: dict[str, object] = {"input": {"path": str(record), "seconds": 0.05}}
        accepted = [submit(urls[i % 2 :] + urls[: i % 2], body) for i in range(60)]
        os.killpg(replicas[0].pid, signal.SIGKILL)  # replica A dies mid-load
        accepted += [submit(urls, body) for _ in range(60)]
        ids = [i for i in accepted if i is not None]
        assert len(ids) == 120  # replica B took everything once A was gone
        deadline, final = time.monotonic() + 90, {}
        with httpx.Client(base_url=urls[1], timeout=5) as c:
            while time.monotonic() < deadline:
                final = {i: c.get(f"/v2/record/status/{i}").json().get("status") for i in ids}
                if all(s == "COMPLETED" for s in final.values()):
                    break
                time.sleep(0.5)
        assert Counter(final.values()) == {"COMPLETED": 120}
        runs = Counter(record.read_text().split())
        assert set(runs) == set(ids) and max(runs.values()) == 1  # none lost, none ran twice
    finally:
        procs.kill_all()


def test_replicas_wake_each_other_without_polling(pg_url: str, tmp_path: Path) -> None:
    """Submit on A, worker long-polls B, runsync waits on A and status-sync on B."""
    procs = Procs(tmp_path)
    ports = [free_port(), free_port()]
    a, b = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        for i, port in enumerate(ports):
            procs.start(
                f"api{i}",
                [
                    sys.executable,
                    "-m",
                    "anypod",
                    "server",
                    "--endpoint",
                    "sleeps",
                    "--port",
                    str(port),
                    "--database",
                    pg_url,
                ],
                {},
            )
        wait_ready(a)
        wait_ready(b)
        token = mint_token(pg_url, "sleeps")
        procs.start(
            "worker",
            [
                sys.executable,
                "-m",
                "anypod",
                "worker",
                handler_path("sleeps"),
                "--server",
                b,
                "--endpoint",
                "sleeps",
                "--token",
                token,
                "--ping-interval",
                "0.5",
            ],
            {},
        )
        wait_ready(b, workers=1)
        time.sleep(0.5)  # the worker is now holding a job-take on B
        with httpx.Client(timeout=30) as c:
            for _ in range(5):
                started = time.monotonic()
                reply = c.post(f"{a}/v2/sleeps/runsync", json={"input": {"seconds": 0}}).json()
                assert reply["status"] == "COMPLETED"
                assert time.monotonic() - started < 1.0  # no poll interval on the path
            job = c.post(f"{a}/v2/sleeps/run", json={"input": {"seconds": 0.5}}).json()
            started = time.monotonic()
            done = c.get(f"{b}/v2/sleeps/status-sync/{job['id']}?wait=10000").json()
            assert done["status"] == "COMPLETED" and time.monotonic() - started < 1.5
    finally:
        procs.kill_all()
