"""The system under test: how a benchmark runs anypod's CLI as subprocesses, from the source
it imports or from another tree (``--src /tmp/old/src`` after ``git worktree add /tmp/old
<commit>``) for before/after runs; the embedded setups; which process plays which role."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import fake_worker, procs, report
from benchmarks.harness.cpu import Roles

HANDLER = "benchmarks/handlers/noop.py"  # relative to the checkout, where subprocesses start
ENDPOINT = "noop"
SRC_HELP = "run anypod from this source tree (a .../src folder) instead of the checkout's"


def imported_source() -> Path:
    """The source folder of the anypod this process would import (PYTHONPATH, or the install)."""
    spec = importlib.util.find_spec("anypod")
    if spec is None or spec.origin is None:
        raise RuntimeError("anypod is not importable: pip install -e . (or --src)")
    return Path(spec.origin).resolve().parents[1]


@dataclass(frozen=True)
class Anypod:
    src: Path | None = None

    @property
    def source_dir(self) -> Path:
        return self.src.resolve() if self.src else imported_source()

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.source_dir)} if self.src else {}

    def identity(self) -> str:
        return report.source_identity(self.source_dir)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "anypod", *args]

    def start(
        self, reg: procs.Registry, name: str, *args: str, env: dict[str, str] | None = None
    ) -> procs.Proc:
        return reg.start(name, self.argv(*args), {**self.env(), **(env or {})})

    def run(self, *args: str, timeout: float = 120) -> str:
        """One CLI command to completion; its stdout."""
        out = subprocess.run(
            self.argv(*args),
            cwd=procs.ROOT,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode:
            raise RuntimeError(f"anypod {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def worker_token(self, dsn: str, endpoint: str = ENDPOINT, server: str | None = None) -> str:
        """A worker token minted in the database (``anypod worker-env``)."""
        extra = ["--server", server] if server else []
        env = self.run("worker-env", "--endpoint", endpoint, "--database", dsn, *extra)
        prefix = "RUNPOD_AI_API_KEY="
        return next(ln[len(prefix) :] for ln in env.splitlines() if ln.startswith(prefix))

    async def serve(
        self,
        reg: procs.Registry,
        *args: str,
        workers: int,
        name: str = "anypod serve",
        endpoint: str = ENDPOINT,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> tuple[procs.Proc, str]:
        """``anypod serve ARGS --port P`` until /health reports ``workers`` and ``endpoint``;
        returns the process and its base URL."""
        port = procs.free_port()
        proc = self.start(reg, name, "serve", *args, "--port", str(port), env=env)
        url = f"http://127.0.0.1:{port}"
        await procs.wait_health(
            proc,
            f"{url}/health",
            lambda h: h.get("workers", 0) >= workers and endpoint in h.get("endpoints", [endpoint]),
            timeout,
        )
        return proc, url


@dataclass(frozen=True)
class Embedded:
    """``anypod serve`` (and, for a ``fakeK`` setup, the fake worker beside it)."""

    name: str
    proc: procs.Proc
    url: str
    helper: procs.Proc | None = None

    def roles(self) -> Roles:
        out = roles(self.proc.pid)
        if self.helper is not None:
            out["worker"] = [self.helper.pid]
        return out


def parse_setup(text: str) -> tuple[int, int]:
    """``WxK`` -> (W workers, concurrency K); ``fakeK`` -> (0, K): no worker, K fake slots."""
    text = text.strip()
    if text.startswith("fake"):
        return 0, int(text[4:] or 8)
    workers, _, concurrency = text.partition("x")
    return int(workers), int(concurrency or 1)


async def embedded(
    cli: Anypod, reg: procs.Registry, setup: str, env: dict[str, str] | None = None
) -> Embedded:
    """The embedded mode on a fresh SQLite file serving the noop handler (endpoint ``noop``),
    ready when /health counts every worker. ``fakeK``: ``--workers 0`` plus the fake worker."""
    workers, slots = parse_setup(setup)
    dsn = f"sqlite:///{reg.dir / f'{setup}-{procs.free_port()}.db'}"
    if workers == 0:
        name = f"anypod fake-worker x{slots}"
        token = cli.worker_token(dsn)  # minted in the fresh file before the server opens it
        args = ["--endpoint", ENDPOINT, "--workers", "0", "--database", dsn]
        proc, url = await cli.serve(reg, *args, workers=0, name=name, env=env)
        helper = fake_worker.start(reg, f"{url}/v2/{ENDPOINT}", token, slots)
        return Embedded(name, proc, url, helper)
    name = f"anypod W={workers} c={slots}"
    args = [HANDLER, "--workers", str(workers), "--concurrency", str(slots), "--database", dsn]
    proc, url = await cli.serve(reg, *args, workers=workers, name=name, env=env)
    return Embedded(name, proc, url)


def roles(pid: int, top: str = "server") -> Roles:
    """An anypod process tree by role: ``top`` (the root), ``worker`` (worker parents: ``anypod
    worker``, or ``python -m anypod.worker`` as newer ``anypod serve`` starts them), ``handler``
    (their handler children, multiprocessing ``spawn_main``), ``other``."""
    out: Roles = {top: [pid]}
    for role in ("worker", "handler", "other"):
        out.setdefault(role, [])
    for child in procs.descendants(pid):
        cmd = procs.cmdline(child)
        if " anypod worker " in f" {cmd} " or " -m anypod.worker " in f" {cmd} ":
            out["worker"].append(child)
        elif "spawn_main" in cmd and "resource_tracker" not in cmd:
            out["handler"].append(child)
        elif cmd:
            out["other"].append(child)
    return out
