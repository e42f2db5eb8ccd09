"""Subprocesses of a benchmark: each in its own session with its log in a file, and stopped for
sure (SIGTERM, then SIGKILL of its process group and of every descendant) on normal exit, on
error, on SIGTERM and on Ctrl-C.

    def main(reg: procs.Registry) -> Coroutine[Any, Any, int]: ...
    sys.exit(procs.run_main(main, keep_logs=args.keep_logs))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]  # the checkout; subprocesses start here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """The pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def matching(predicate: Callable[[str], bool]) -> list[int]:
    """Every process on the machine whose command line satisfies ``predicate``."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and predicate(cmdline(int(e)))]


def log_errors(path: Path, limit: int = 5) -> list[str]:
    """Lines of a log that look like errors (tracebacks, ERROR, CRITICAL, exceptions)."""
    keys = ("ERROR", "Traceback", "CRITICAL", "xception")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln.strip()[:300] for ln in lines if any(k in ln for k in keys)][:limit]


def _group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Proc:
    """One subprocess in its own session; stdout and stderr go to ``log`` (stdout to a pipe with
    ``pipes=True``, stdin too)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
    ) -> None:
        self.name, self.argv, self.log_path = name, argv, log
        self._log: IO[bytes] = log.open("wb")
        pipe = subprocess.PIPE if pipes else None
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=pipe or subprocess.DEVNULL,
            stdout=pipe or self._log,
            stderr=self._log if pipes else subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_errors(self, limit: int = 5) -> list[str]:
        return log_errors(self.log_path, limit)

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.tail()}")

    def stop(self, grace: float = 10.0) -> str:
        """SIGTERM the group, wait ``grace`` s, then SIGKILL the group and every descendant
        (also those that left it). Returns how it went: ``exited 0.4 s``, ``KILLED after 8 s``."""
        family = {pid: cmdline(pid) for pid in [self.pid, *descendants(self.pid)]}
        began = time.monotonic()
        how = f"had exited ({self.popen.returncode})" if not self.alive() else ""
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
            how = how or f"exited {time.monotonic() - began:.1f} s"
        except subprocess.TimeoutExpired:
            how = f"KILLED after {grace:g} s"
        others = {pid: cmd for pid, cmd in family.items() if pid != self.pid}
        settle = time.monotonic() + 3.0  # let the children finish their own shutdown
        while time.monotonic() < settle and any(map(running, others)):
            time.sleep(0.05)
        _signal_group(self.pid, signal.SIGKILL)
        for pid, cmd in others.items():  # those that left the group; pids are reused: compare
            if running(pid) and cmdline(pid) == cmd and _group(pid) != self.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                how += f"; SIGKILLed leftover {pid}"
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()
        return how


@dataclass(frozen=True)
class Stopped:
    name: str
    how: str  # "exited 0.4 s", "KILLED after 8 s", ...
    log_errors: list[str]


class Registry:
    """Owns a benchmark's subprocesses and its scratch folder; leaving the ``with`` block stops
    every process still running and removes the folder (unless ``keep_logs``). ``stopped``
    records how each stopped process went, with the error lines of its log."""

    def __init__(self, keep_logs: bool = False, prefix: str = "anypod-bench-") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep_logs = keep_logs
        self.live: list[Proc] = []
        self.stopped: list[Stopped] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
    ) -> Proc:
        log = self.dir / f"{name.replace(' ', '-').replace('/', '_')}-{len(self.live)}.log"
        proc = Proc(name, argv, log, env, pipes)
        self.live.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 10.0) -> str:
        if proc in self.live:
            self.live.remove(proc)
        how = proc.stop(grace)
        self.stopped.append(Stopped(proc.name, how, proc.log_errors()))
        return how

    def shutdown_report(self) -> str:
        lines = ["shutdown after SIGTERM / errors in logs:"]
        for s in self.stopped:
            lines += [f"  {s.name}: {s.how}", *(f"      log: {e}" for e in s.log_errors)]
        return "\n".join(lines)

    def stop_all(self) -> None:
        for proc in reversed(list(self.live)):
            self.stop(proc, grace=5.0)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        if not self.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)


async def wait_ready(
    proc: Proc, probe: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "ready"
) -> None:
    """Poll ``probe`` every 0.1 s until it returns True (a connection error or a bad answer
    counts as not yet); raise if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        proc.check()
        try:
            if await probe():
                return
        except (aiohttp.ClientError, OSError, ValueError, KeyError, RuntimeError) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not {what} after {timeout:g} s ({last}):\n{proc.tail()}")


async def wait_health(
    proc: Proc, url: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """GET ``url`` (a health route) until it answers 200 with JSON that ``ready`` accepts."""
    seen: dict[str, Any] = {}

    async def probe() -> bool:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            seen.update(await resp.json(content_type=None))
            return resp.status == 200 and ready(seen)

    await wait_ready(proc, probe, timeout, what=f"healthy at {url}")
    return seen


async def wait_log(proc: Proc, text: str, timeout: float = 60.0) -> None:
    async def probe() -> bool:
        return text in proc.log_path.read_text(errors="replace")

    await wait_ready(proc, probe, timeout, what=f"saying {text!r}")


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_main(main: Callable[[Registry], Coroutine[Any, Any, int]], keep_logs: bool = False) -> int:
    """Run ``main(registry)`` on uvloop (asyncio if missing); SIGTERM and Ctrl-C end it, and every
    subprocess it started is stopped whatever happens."""
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    with Registry(keep_logs) as registry:
        if keep_logs:
            print(f"logs in {registry.dir}", flush=True)
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                return runner.run(main(registry))
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
