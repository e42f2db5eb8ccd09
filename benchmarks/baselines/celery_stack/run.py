"""Start/stop the whole baseline stack (uvicorn API + Celery worker) as subprocesses.

    with Stack(port=8100, api_workers=1, celery_concurrency=2) as base_url:
        ...  # drive base_url

CLI:  python run.py --port 8100                    # serve until Ctrl-C
      python run.py --port 8100 --bench -n 2000 -c 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import psycopg
import redis

import loadgen
from settings import BROKER_URL, CREATE_TABLE_SQL, DROP_TABLE_SQL, PG_DSN, TABLE

HERE = Path(__file__).resolve().parent
_VENV_PY = HERE / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable


def reset_state() -> None:
    """Fresh table and empty broker db, so every run is independent."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(DROP_TABLE_SQL)
        conn.execute(CREATE_TABLE_SQL)
    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.flushdb()  # only our own db number
    finally:
        client.close()


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        # Own session => own process group, so stop() can reap prefork children too.
        return subprocess.Popen(
            [PYTHON, "-m", *args],
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (graceful/warm shutdown), then SIGKILL the whole process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers: orphaned pool children
    except ProcessLookupError:
        pass
    proc.wait()


class Stack:
    def __init__(
        self,
        port: int = 8100,
        api_workers: int = 1,
        celery_concurrency: int = 2,
        log_dir: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = port
        self.api_workers = api_workers
        self.celery_concurrency = celery_concurrency
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="celery_stack_"))
        self.startup_timeout = startup_timeout
        self.base_url = f"http://127.0.0.1:{port}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> str:
        reset_state()
        try:
            self._procs.append(_spawn(self._worker_args(), self.log_dir / "celery.log"))
            self._procs.append(_spawn(self._api_args(), self.log_dir / "uvicorn.log"))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in reversed(self._procs):  # API first: stop accepting work
            _stop(proc, timeout=15.0)
        self._procs.clear()

    def _worker_args(self) -> list[str]:
        return [
            "celery", "-A", "tasks", "worker",
            "--pool", "prefork",
            "--concurrency", str(self.celery_concurrency),
            "--loglevel", "WARNING",
            "--hostname", f"celery_stack_{self.port}@%h",
            # Single worker node: gossip/mingle only add startup time and chatter.
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip

    def _api_args(self) -> list[str]:
        return [
            "uvicorn", "app:app",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.api_workers),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited early; logs in {self.log_dir}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        self._wait_health(deadline)
        self._wait_probe_job(deadline)

    def _wait_health(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"API not healthy in time; logs in {self.log_dir}")

    def _wait_probe_job(self, deadline: float) -> None:
        """End-to-end probe: the worker is only 'up' once it has run a job."""
        job_id = _http_json("POST", f"{self.base_url}/jobs", {"input": {"probe": True}})["id"]
        while time.monotonic() < deadline:
            self._check_alive()
            if _http_json("GET", f"{self.base_url}/jobs/{job_id}")["status"] == "completed":
                with psycopg.connect(PG_DSN, autocommit=True) as conn:
                    conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (job_id,))
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker did not run probe job; logs in {self.log_dir}")


def _http_json(method: str, url: str, body: object | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def _serve_forever() -> None:
    """Block until Ctrl-C or SIGTERM; the caller's `with` block then stops the stack."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--celery-concurrency", type=int, default=2)
    p.add_argument("--bench", action="store_true", help="run loadgen against it, then stop")
    p.add_argument("-n", "--jobs", type=int, default=2000)
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("--poll-interval", type=float, default=0.05, help="seconds")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    stack = Stack(args.port, args.api_workers, args.celery_concurrency)
    with stack as base_url:
        print(f"stack up at {base_url} (logs: {stack.log_dir})", file=sys.stderr)
        if not args.bench:
            _serve_forever()
            return
        target = loadgen.celery_target(base_url)
        result = asyncio.run(loadgen.run(target, args.jobs, args.concurrency, args.poll_interval))
    print(json.dumps(result.as_dict()) if args.json else result.summary())


if __name__ == "__main__":
    main()
