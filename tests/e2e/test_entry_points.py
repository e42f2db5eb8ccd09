"""Other ways in: anypod.serverless.start, multi-endpoint config, the SDK client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from anypod import Client, errors
from tests.conftest import FAST_ENV, HANDLERS, Served, free_port
from tests.postgres import MakeDatabase


def test_handler_file_serves_itself_with_anypod_serverless_start(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **FAST_ENV,
        "API_PORT": str(port),
        "ANYPOD_DATABASE_URL": f"sqlite:///{tmp_path / 'self.db'}",
    }
    served = Served(
        [sys.executable, str(HANDLERS / "concurrency.py")],
        env,
        tmp_path,
        port,
        tmp_path / "self.log",
    )
    served.start()
    try:
        served.wait_workers(1)
        reply = httpx.post(
            f"{served.url}/v2/concurrency/runsync", json={"input": {"seconds": 0.1}}, timeout=30
        ).json()
        assert reply["status"] == "COMPLETED" and reply["output"]["end"] > reply["output"]["start"]
    finally:
        served.stop()


def test_config_file_declares_several_endpoints(serve: Any, tmp_path: Path) -> None:
    config = tmp_path / "anypod.toml"
    config.write_text(
        f'[endpoints.echoer]\nhandler = "{HANDLERS / "echo.py"}"\n\n'
        f'[endpoints.worky]\nhandler = "{HANDLERS / "sleeps.py"}"\nworkers = 2\n'
        "execution_timeout_ms = 5000\n\n[endpoints.remote]\n"
    )
    s = serve(None, extra=["--config", str(config)])
    s.wait_workers(3)
    with Client(s.url) as client:
        assert client.runsync("echoer", {"v": 1})["output"]["echo"] == {"v": 1}
        assert client.runsync("worky", {"seconds": 0})["output"]["slept"] == 0
        queued = client.run("remote", {"v": 3})
        assert client.status("remote", queued["id"])["status"] == "IN_QUEUE"
        with pytest.raises(errors.EndpointNotFound) as missing:
            client.run("nope", {})
        assert missing.value.status_code == 404
        job = client.run("worky", {"seconds": 30})
        timed_out = client.status("worky", job["id"], wait_ms=15_000)
        assert timed_out["status"] == "TIMED_OUT"  # the endpoint's default executionTimeout


def test_anypod_migrate_readies_an_empty_postgres_database(
    serve: Any, pg_database: MakeDatabase
) -> None:
    url = pg_database(template=False)
    migrate = [sys.executable, "-m", "anypod", "migrate", "--database", url]
    out = subprocess.run(migrate, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "schema up to date" in out.stdout, out.stderr
    s = serve("echo", extra=["--database", url])
    with Client(s.url) as client:
        assert client.runsync("echo", {"v": 1})["output"]["echo"] == {"v": 1}


def test_bad_config_and_public_bind_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[endpoints.x]\nworkerz = 1\n")
    run = [sys.executable, "-m", "anypod", "serve", "--config", str(bad)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown key 'workerz'" in out.stderr
    public = [
        sys.executable,
        "-m",
        "anypod",
        "serve",
        "--endpoint",
        "x",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--database",
        f"sqlite:///{tmp_path / 'p.db'}",
    ]
    out = subprocess.run(public, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "without API keys" in out.stderr


def test_sigterm_to_the_server_alone_stops_it_and_its_workers(serve: Any) -> None:
    s = serve("echo", workers=2)
    assert s.proc is not None
    with Client(s.url) as client:
        assert client.runsync("echo", {"v": 1})["status"] == "COMPLETED"
    workers = subprocess.run(
        ["pgrep", "-P", str(s.proc.pid), "-f", "anypod.worker"], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 2
    s.proc.send_signal(signal.SIGTERM)  # not the process group: the server must stop them
    assert s.proc.wait(15) == 0
    deadline = time.monotonic() + 15
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
