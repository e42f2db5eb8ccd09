#!/usr/bin/env python
"""Throughput and latency of anypod's embedded mode, next to runpod's own local test server.

    python benchmarks/throughput.py                      # full run (~5 min on 2 cores)
    python benchmarks/throughput.py --quick              # smoke run (~30 s)
    python benchmarks/throughput.py --json out.json      # also write the figures
    python benchmarks/throughput.py --profile /tmp/prof  # also py-spy server, worker, handler
    python benchmarks/throughput.py --configs 1x8 --no-baseline --profile /tmp/p --profile-gil

anypod: ``python -m anypod serve benchmarks/handlers/noop.py --workers W --concurrency K`` on a
fresh SQLite file, endpoint ``noop`` (``--configs WxK,...``). ``fakeK`` adds a diagnostic row:
``anypod serve --workers 0`` plus a minimal aiohttp worker (K job-take/job-done loops, no handler
process), i.e. what the server alone can do. Baseline: ``python benchmarks/handlers/noop.py
--rp_serve_api`` (the runpod package's in-process FastAPI test server; it persists nothing).

Measured with one aiohttp ``ClientSession`` (keep-alive) under uvloop:

* ``/runsync`` latency: one client, sequential, ``--samples`` requests after ``--warmup``.
* ``GET /status`` of a finished job, sequential: the server's per-request floor, no worker.
* throughput: ``--jobs`` jobs by ``--clients`` concurrent clients; each client submits with
  ``POST /v2/noop/run`` and then waits for COMPLETED, either by long-polling
  ``/status-sync/{id}?wait=60000`` or by polling ``/status/{id}`` every ``--poll-ms``. jobs/s =
  jobs / (first submit .. last COMPLETED); latency = submit .. COMPLETED seen by the client.

CPU seconds per process (server, worker parents, handler children, this client) are read from
/proc around each throughput phase and printed as CPU ms per job, with the CPU that every other
process on the machine used meanwhile ("other processes"): on a shared 2-core box jobs/s moves
with the neighbours, CPU ms/job much less. ``--profile DIR`` adds a 10 s throughput phase and a
10 s runsync phase under py-spy (one server, worker parent and handler child each; raw collapsed
stacks in DIR) and prints self/inclusive shares per function.

Every subprocess runs in its own session and is stopped with SIGTERM, then SIGKILL (its whole
process group, and any descendant that left it), on exit, error, SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "benchmarks" / "handlers" / "noop.py"
ENDPOINT = "noop"
PHASE_LIMIT = 55.0  # seconds: every measured phase stops by then, whatever the counts say
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
TICK = os.sysconf("SC_CLK_TCK")

TARGET_P50_MS, TARGET_P99_MS, TARGET_JOBS_S = 3.0, 10.0, 1000.0


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
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


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Proc:
    """A subprocess in its own session; :meth:`stop` ends it and everything it started."""

    live: list[Proc] = []

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path = name, argv, log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        Proc.live.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def roles(self) -> dict[str, list[int]]:
        """anypod's process tree: server, worker parents (``anypod worker``), handler children."""
        out: dict[str, list[int]] = {"server": [self.pid], "worker": [], "handler": [], "other": []}
        for pid in descendants(self.pid):
            cmd = cmdline(pid)
            if " anypod worker " in f" {cmd} ":
                out["worker"].append(pid)
            elif "spawn_main" in cmd and "resource_tracker" not in cmd:
                out["handler"].append(pid)
            elif cmd:
                out["other"].append(pid)
        return out

    def stop(self, grace: float = 10.0) -> None:
        family = [self.pid, *descendants(self.pid)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(
            Path(f"/proc/{p}").exists() and _not_zombie(p) for p in family[1:]
        ):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in family:  # anything that left the group (setsid) but is still ours
            if Path(f"/proc/{pid}").exists() and _not_zombie(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for p in list(cls.live):
            p.stop(grace=5.0)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------------------- stats


def pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = (len(sorted_ms) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


def summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {
        "n": len(s),
        "p50": pct(s, 0.5),
        "p90": pct(s, 0.9),
        "p99": pct(s, 0.99),
        "mean": sum(s) / len(s) if s else float("nan"),
        "max": s[-1] if s else float("nan"),
    }


# ----------------------------------------------------------------------------- measurements

JSON = {"Content-Type": "application/json"}


def body(i: int) -> bytes:
    return json.dumps({"input": {"i": i}}).encode()


async def runsync_latency(
    session: aiohttp.ClientSession, url: str, samples: int, warmup: int, limit: float = PHASE_LIMIT
) -> dict[str, Any]:
    """Sequential POST runsync; every answer must say COMPLETED."""
    ms: list[float] = []
    started = time.perf_counter()
    for i in range(warmup + samples):
        payload = body(i)
        t0 = time.perf_counter()
        async with session.post(url, data=payload, headers=JSON) as resp:
            data = await resp.json(content_type=None)
        dt = (time.perf_counter() - t0) * 1000
        if resp.status != 200 or data.get("status") != "COMPLETED":
            raise RuntimeError(f"runsync {url}: HTTP {resp.status} {data}")
        if i >= warmup:
            ms.append(dt)
        if time.perf_counter() - started > limit:
            break
    out = summary(ms)
    out["truncated"] = len(ms) < samples
    out["req_s"] = len(ms) / (sum(ms) / 1000) if ms else 0.0
    return out


async def get_latency(
    session: aiohttp.ClientSession, url: str, samples: int, warmup: int, limit: float = 20.0
) -> dict[str, Any]:
    """Sequential GETs of one URL: the server's per-request floor with no worker involved."""
    ms: list[float] = []
    started = time.perf_counter()
    for i in range(warmup + samples):
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
        dt = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {resp.status}")
        if i >= warmup:
            ms.append(dt)
        if time.perf_counter() - started > limit:
            break
    return summary(ms)


async def throughput(
    session: aiohttp.ClientSession,
    base: str,
    jobs: int,
    clients: int,
    mode: str,
    poll_ms: float,
    limit: float = PHASE_LIMIT,
    duration: float | None = None,
) -> dict[str, Any]:
    """``jobs`` jobs through ``clients`` closed-loop clients: submit with /run, then wait for the
    result by ``mode`` ("status-sync" long-poll, or "status" polled every ``poll_ms``).
    With ``duration``, clients stop taking new jobs after that many seconds instead."""
    numbers = iter(range(jobs if duration is None else 10**9))
    lat: list[float] = []
    polls = [0]
    bad: collections.Counter[str] = collections.Counter()
    t_start = time.perf_counter()
    stop_at = t_start + (duration if duration is not None else limit)

    async def one_client() -> None:
        for i in numbers:
            if time.perf_counter() > stop_at:
                return
            t0 = time.perf_counter()
            async with session.post(f"{base}/run", data=body(i), headers=JSON) as resp:
                sub = await resp.json(content_type=None)
            if resp.status != 200 or "id" not in sub:
                bad[f"run HTTP {resp.status}"] += 1
                continue
            job_id, status = sub["id"], sub.get("status")
            while status not in TERMINAL:
                if mode == "status-sync":
                    url = f"{base}/status-sync/{job_id}?wait=60000"
                else:
                    if polls[0] and status is not None:
                        await asyncio.sleep(poll_ms / 1000)
                    url = f"{base}/status/{job_id}"
                async with session.get(url) as resp:
                    st = await resp.json(content_type=None)
                polls[0] += 1
                status = st.get("status")
                if time.perf_counter() > t_start + limit + 30:
                    bad["gave up waiting"] += 1
                    return
            lat.append((time.perf_counter() - t0) * 1000)
            if status != "COMPLETED":
                bad[status] += 1

    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - t_start
    out: dict[str, Any] = {
        "mode": mode,
        "clients": clients,
        "jobs": len(lat),
        "elapsed_s": elapsed,
        "jobs_s": len(lat) / elapsed if elapsed else 0,
        "latency_ms": summary(lat),
        "polls_per_job": polls[0] / max(len(lat), 1),
        "errors": dict(bad),
    }
    out["truncated"] = duration is None and len(lat) < jobs
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / TICK, total / TICK


@contextlib.contextmanager
def cpu_meter(server: Proc | None, helper: Proc | None = None):
    """CPU seconds each role used while the block ran (``client`` is this process)."""
    roles = server.roles() if server else {}
    if helper is not None:
        roles["worker"] = [*roles.get("worker", []), helper.pid]
    before = {pid: cpu_seconds(pid) for pids in roles.values() for pid in pids}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    m0 = machine_busy()
    t0 = time.perf_counter()
    result: dict[str, float] = {}
    yield result
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    for role, pids in roles.items():
        if pids:
            result[role] = sum(cpu_seconds(p) - before[p] for p in pids)
    result["client"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    m1 = machine_busy()
    ours = sum(result.values())
    result["others"] = max(m1[0] - m0[0] - ours, 0.0)  # everything else on the machine
    result["wall"] = wall


async def wait_health(
    session: aiohttp.ClientSession, url: str, workers: int, proc: Proc, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            async with session.get(f"{url}/health") as resp:
                last = await resp.json(content_type=None)
                if resp.status == 200 and last.get("workers", 0) >= workers:
                    return last
        except (aiohttp.ClientError, ValueError) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s (last: {last}):\n{proc.tail()}")


async def wait_runsync(
    session: aiohttp.ClientSession, url: str, proc: Proc, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            async with session.post(url, data=body(0), headers=JSON) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.tail()}")


# ----------------------------------------------------------------------------- profiling


def pyspy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start_profiles(
    roles: dict[str, list[int]],
    outdir: Path,
    tag: str,
    seconds: float,
    rate: int,
    nonblocking: bool = False,
    native: bool = False,
    gil: bool = False,
) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    exe = pyspy()
    if exe is None:
        print("  py-spy not found (pip install py-spy); skipping profile", flush=True)
        return []
    running = []
    for role in ("server", "worker", "handler"):
        for n, pid in enumerate(roles.get(role, [])[:1]):  # one of each is representative
            raw = outdir / f"{tag}-{role}.txt"
            cmd = [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                str(rate),
                "--function",
                "--format",
                "raw",
                "-o",
                str(raw),
            ]
            if nonblocking:
                cmd.append("--nonblocking")
            if native:
                cmd.append("--native")
            if gil:
                cmd.append("--gil")
            log = open(outdir / f"{tag}-{role}.log", "wb")
            running.append(
                (
                    role,
                    raw,
                    subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    ),
                )
            )
            del n
    return running


def finish_profiles(running: list[tuple[str, Path, subprocess.Popen[bytes]]]) -> None:
    for _, _, p in running:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
                p.wait()


def _frame_name(frame: str) -> tuple[str, str]:
    """``func (path/file.py:12)`` -> (``file.py:func``, module-ish group)."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = path.split("site-packages/")[-1].split("/src/")[-1]
    for marker in ("/lib/python3", "/usr/lib/python3"):
        if marker in short:
            short = "stdlib/" + short.split(marker, 1)[1].split("/", 1)[-1]
    group = short.split("/")[0] if "/" in short else short
    if group == "stdlib":
        group = "stdlib:" + short.split("/")[1].removesuffix(".py")
    return f"{short}:{func}", group


BOILERPLATE_MODULES = ("typer/", "<frozen runpy>", "runpy.py", "click/", "<string>")
BOILERPLATE_FUNCS = {
    "run_forever",
    "run_until_complete",
    "_run_once",
    "Runner.run",
    "run",
    "_run_code",
    "_run_module_as_main",
    "<module>",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
    "Thread.run",
    "spawn_main",
    "_main",
    "BaseProcess._bootstrap",
    "BaseProcess.run",
    "Handle._run",
    "BaseEventLoop._run_once",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "Context.run",
    "main",
    "Task.__step",
    "Task.__step_run_and_handle_result",
    "Task.task_step_impl",
}


def _boilerplate(name: str) -> bool:
    path, _, func = name.rpartition(":")
    return path.startswith(BOILERPLATE_MODULES) or (
        func in BOILERPLATE_FUNCS
        and (
            path.startswith(("stdlib/", "asyncio/", "threading", "multiprocessing/", "<frozen"))
            or path in ("anypod/cli.py", "anypod/__main__.py", "anypod/compose.py")
        )
    )


def read_profile(raw: Path, top: int = 20) -> dict[str, Any]:
    """Self (leaf) and inclusive sample shares by function, and self share by package.
    ``inclusive`` leaves out event-loop/CLI/thread entry frames that sit under everything."""
    leaf: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        names = [_frame_name(f) for f in frames]
        leaf[names[-1][0]] += n
        pkg[names[-1][1]] += n
        for name in {nm for nm, _ in names}:
            if not _boilerplate(name):
                incl[name] += n
            if name.startswith("anypod/") and not _boilerplate(name):
                ours[name] += n

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self": share(leaf),
        "inclusive": share(incl),
        "anypod_inclusive": share(ours),
        "self_by_package": share(pkg),
    }


def print_profile(role: str, prof: dict[str, Any], seconds: float, rate: int) -> None:
    busy = 100 * prof["samples"] / max(seconds * rate, 1)
    print(f"\n  [{role}] {prof['samples']} non-idle samples (~{busy:.0f}% of one core)")
    print("    self by package: " + ", ".join(f"{k} {v}%" for k, v in prof["self_by_package"][:12]))
    for title, key, n in (
        ("top self", "self", 12),
        ("top inclusive", "inclusive", 18),
        ("anypod functions, inclusive", "anypod_inclusive", 10),
    ):
        print(f"    {title}:")
        for k, v in prof[key][:n]:
            print(f"      {v:5.1f}%  {k}")


# ----------------------------------------------------------------------------- runs


@dataclass
class Row:
    name: str
    workers: int = 0
    concurrency: int = 0
    source: str = ""
    runsync: dict[str, Any] = field(default_factory=dict)
    floor: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)


def session_for(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients + 8, keepalive_timeout=120),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def bench_baseline(args: argparse.Namespace, tmp: Path) -> Row:
    port = free_port()
    argv = [sys.executable, str(HANDLER), "--rp_serve_api", "--rp_api_port", str(port)]
    print(f"\n== baseline: {' '.join(argv[1:])}  (load avg {os.getloadavg()[0]:.2f})", flush=True)
    proc = Proc("runpod test server", argv, tmp / "baseline.log")
    row = Row("runpod --rp_serve_api")
    try:
        async with session_for(1) as session:
            url = f"http://127.0.0.1:{port}/runsync"
            await wait_runsync(session, url, proc)
            row.runsync = await runsync_latency(session, url, args.samples, args.warmup)
            print(f"  runsync: {fmt_lat(row.runsync)}", flush=True)
    finally:
        proc.stop()
    return row


async def bench_anypod(
    args: argparse.Namespace, tmp: Path, workers: int, concurrency: int, profile: bool
) -> Row:
    """One anypod setup. ``workers == 0`` with ``concurrency == K``: the diagnostic "fake worker"
    row, ``anypod serve --workers 0`` plus :func:`fake_worker` (aiohttp, K take-then-done loops,
    no handler process), which shows what the server alone can do."""
    fake = workers == 0
    tag = f"fake{concurrency}" if fake else f"w{workers}-c{concurrency}"
    port = free_port()
    db = tmp / f"bench-{tag}.db"
    dsn = f"sqlite:///{db}"
    argv = [sys.executable, "-m", "anypod", "serve"]
    if fake:
        argv += ["--endpoint", ENDPOINT, "--workers", "0"]
    else:
        argv += [str(HANDLER.relative_to(ROOT)), "--workers", str(workers)]
        argv += ["--concurrency", str(concurrency)]
    argv += ["--port", str(port), "--database", dsn]
    name = f"anypod fake-worker x{concurrency}" if fake else f"anypod W={workers} c={concurrency}"
    token = ""
    if fake:  # mint a worker token in the fresh database before the server opens it
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "anypod",
                "worker-env",
                "--endpoint",
                ENDPOINT,
                "--database",
                dsn,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        token = next(
            line.split("=", 1)[1]
            for line in out.splitlines()
            if line.startswith("RUNPOD_AI_API_KEY=")
        )
    print(
        f"\n== {name}: {' '.join(argv[1:])}  (load avg {os.getloadavg()[0]:.2f}; "
        f"{source_fingerprint()})",
        flush=True,
    )
    env = {"ANYPOD_LOG_LEVEL": args.log_level} if args.log_level else None
    proc = Proc(name, argv, tmp / f"anypod-{tag}.log", env=env)
    helper: Proc | None = None
    row = Row(name, workers, concurrency, source=source_fingerprint())
    base = f"http://127.0.0.1:{port}/v2/{ENDPOINT}"
    try:
        async with session_for(args.clients) as session:
            health = await wait_health(session, f"http://127.0.0.1:{port}", workers, proc)
            if ENDPOINT not in health.get("endpoints", []):
                raise RuntimeError(f"endpoint {ENDPOINT!r} not served: {health}")
            if fake:
                helper = Proc(
                    "fake worker",
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--fake-worker",
                        base,
                        token,
                        str(concurrency),
                    ],
                    tmp / f"fake-worker-{concurrency}.log",
                )
            roles = proc.roles()
            if helper is not None:
                roles["worker"] = [helper.pid]
            print(
                f"  pids: server {roles['server']} worker {roles['worker']} "
                f"handler {roles['handler']}",
                flush=True,
            )
            row.runsync = await runsync_latency(
                session, f"{base}/runsync", args.samples, args.warmup
            )
            print(f"  runsync: {fmt_lat(row.runsync)}", flush=True)
            async with session.post(f"{base}/run", data=body(-1), headers=JSON) as resp:
                job_id = (await resp.json(content_type=None))["id"]
            await asyncio.sleep(0.2)
            floor = await get_latency(
                session, f"{base}/status/{job_id}", args.samples // 2, args.warmup // 2
            )
            row.floor = floor
            print(f"  GET /status (server only, no worker): {fmt_lat(floor)}", flush=True)
            for mode in args.modes:
                with cpu_meter(proc, helper) as cpu:
                    res = await throughput(
                        session, base, args.jobs, args.clients, mode, args.poll_ms
                    )
                row.throughput[mode] = res
                row.cpu[mode] = cpu
                print(
                    f"  throughput via {mode}: {res['jobs_s']:.0f} jobs/s  "
                    f"({res['jobs']} jobs in {res['elapsed_s']:.1f} s; latency "
                    f"{fmt_lat(res['latency_ms'], short=True)}; "
                    f"{res['polls_per_job']:.2f} status calls/job"
                    f"{'; errors ' + str(res['errors']) if res['errors'] else ''}"
                    f"{'; TRUNCATED' if res['truncated'] else ''})",
                    flush=True,
                )
                print("    CPU ms/job: " + fmt_cpu(cpu, res["jobs"]), flush=True)
            if profile:
                row.profile = await profile_phases(args, proc, session, base, row.name, helper)
    finally:
        if helper is not None:
            helper.stop()
        proc.stop()
    return row


async def fake_worker(base: str, token: str, slots: int) -> None:
    """A minimal RunPod-protocol worker: ``slots`` loops of job-take then job-done, aiohttp, no
    handler process. Runs until SIGTERM."""
    headers = {"Authorization": token}
    done_body = b'{"output": {"ok": true}}'
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession(
        headers=headers,
        connector=aiohttp.TCPConnector(limit=2 * slots + 4),
        timeout=aiohttp.ClientTimeout(total=120),
    ) as session:

        async def slot(n: int) -> None:
            wid = f"fake-{os.getpid()}-{n}"
            while not stop.is_set():
                async with session.get(f"{base}/job-take/{wid}?job_in_progress=0") as resp:
                    if resp.status == 204:
                        await resp.read()
                        continue
                    job = await resp.json(content_type=None)
                async with session.post(
                    f"{base}/job-done/{wid}/{job['id']}?isStream=false",
                    data=done_body,
                    headers=JSON,
                ) as resp:
                    await resp.read()

        tasks = [asyncio.create_task(slot(i)) for i in range(slots)]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def profile_phases(
    args: argparse.Namespace,
    proc: Proc,
    session: aiohttp.ClientSession,
    base: str,
    name: str,
    helper: Proc | None = None,
) -> dict[str, Any]:
    outdir = Path(args.profile)
    outdir.mkdir(parents=True, exist_ok=True)
    tag_base = name.replace("anypod ", "").replace("=", "").replace(" ", "-")
    tag_base += "-gil" if args.profile_gil else ""
    seconds, rate = args.profile_seconds, args.profile_rate
    out: dict[str, Any] = {}
    phases = [("throughput", "status-sync"), ("runsync", None)]
    for phase, mode in phases:
        tag = f"{tag_base}-{phase}"
        print(
            f"\n  -- profiling {phase} for {seconds:.0f} s (py-spy --rate {rate}) -> "
            f"{outdir}/{tag}-*.txt",
            flush=True,
        )
        roles = proc.roles()
        if helper is not None:
            roles["worker"] = [helper.pid]
        running = start_profiles(
            roles,
            outdir,
            tag,
            seconds,
            rate,
            not args.profile_blocking,
            args.profile_native,
            args.profile_gil,
        )
        if not running:
            return out
        await asyncio.sleep(0.5)  # let py-spy attach
        with cpu_meter(proc, helper) as cpu:
            if phase == "throughput":
                res = await throughput(
                    session,
                    base,
                    0,
                    args.clients,
                    mode or "status-sync",
                    args.poll_ms,
                    duration=seconds,
                )
                n = res["jobs"]
                print(f"  ({res['jobs_s']:.0f} jobs/s under the profiler)")
            else:
                res = await runsync_latency(session, f"{base}/runsync", 10**9, 0, limit=seconds)
                n = res["n"]
                print(f"  (runsync p50 {res['p50']:.2f} ms under the profiler)")
        print("    CPU ms/job: " + fmt_cpu(cpu, n), flush=True)
        await asyncio.to_thread(finish_profiles, running)
        out[phase] = {"cpu": cpu, "jobs": n}
        for role, raw, p in running:
            if raw.exists():
                prof = read_profile(raw)
                out[phase][role] = prof
                print_profile(role, prof, seconds, rate)
            else:
                print(
                    f"  [{role}] py-spy wrote nothing (exit {p.returncode}); see "
                    f"{raw.with_suffix('.log')}"
                )
    return out


# ----------------------------------------------------------------------------- output


def fmt_lat(s: dict[str, Any], short: bool = False) -> str:
    if short:
        return f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms"
    return (
        f"p50 {s['p50']:.2f} ms  p90 {s['p90']:.2f}  p99 {s['p99']:.2f}  "
        f"mean {s['mean']:.2f}  (n={s['n']}{', TRUNCATED' if s.get('truncated') else ''})"
    )


def fmt_cpu(cpu: dict[str, float], jobs: int) -> str:
    jobs = max(jobs, 1)
    parts = [
        f"{k} {1000 * v / jobs:.2f}"
        for k, v in cpu.items()
        if k not in ("wall", "other", "others") or (k == "other" and v > 0.05)
    ]
    ours = sum(v for k, v in cpu.items() if k not in ("wall", "others"))
    return (
        ", ".join(parts) + f"  | ours {1000 * ours / jobs:.2f} ms/job = "
        f"{ours / cpu['wall']:.2f} cores; other processes "
        f"{cpu.get('others', 0.0) / cpu['wall']:.2f} cores (of {os.cpu_count()})"
    )


def table(rows: list[Row], baseline: Row | None, modes: list[str]) -> str:
    head = ["setup", "runsync p50", "p90", "p99", "mean", "GET status p50"]
    for m in modes:
        head += [f"{m} jobs/s", "lat p50", "lat p99"]
    lines = [head]
    for r in ([baseline] if baseline else []) + rows:
        s = r.runsync
        cells = [
            r.name,
            f"{s['p50']:.2f}",
            f"{s['p90']:.2f}",
            f"{s['p99']:.2f}",
            f"{s['mean']:.2f}",
            f"{r.floor['p50']:.2f}" if r.floor else "-",
        ]
        for m in modes:
            t = r.throughput.get(m)
            cells += (
                [
                    f"{t['jobs_s']:.0f}",
                    f"{t['latency_ms']['p50']:.1f}",
                    f"{t['latency_ms']['p99']:.1f}",
                ]
                if t
                else ["-", "-", "-"]
            )
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def verdicts(rows: list[Row], baseline: Row | None) -> list[str]:
    out = []
    for r in rows:
        s = r.runsync
        best = max((t["jobs_s"] for t in r.throughput.values()), default=0.0)
        ratio = ""
        if baseline:
            b = baseline.runsync
            ratio = f"  vs baseline: p50 x{s['p50'] / b['p50']:.2f}, p99 x{s['p99'] / b['p99']:.2f}"
        out.append(
            f"{r.name}: runsync p50 {s['p50']:.2f} ms <= {TARGET_P50_MS:g} "
            f"{'MET' if s['p50'] <= TARGET_P50_MS else 'MISSED'}; p99 {s['p99']:.2f} ms <= "
            f"{TARGET_P99_MS:g} {'MET' if s['p99'] <= TARGET_P99_MS else 'MISSED'}; "
            f"best {best:.0f} jobs/s >= {TARGET_JOBS_S:g} "
            f"{'MET' if best >= TARGET_JOBS_S else 'MISSED'}{ratio}"
        )
    return out


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``WxC`` -> (W, C); ``fakeK`` -> (0, K), the server with the in-script fake worker."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part.startswith("fake"):
            out.append((0, int(part[4:] or 8)))
            continue
        w, _, c = part.partition("x")
        out.append((int(w), int(c or 1)))
    return out


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="anypod-bench-"))
    source_at_start = source_fingerprint()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{platform.platform()}; source {source_at_start}; logs in {tmp}"
    )
    print(
        f"runsync: {args.samples} samples after {args.warmup} warm-up; throughput: "
        f"{args.jobs} jobs, {args.clients} clients, modes {args.modes}"
        f"{f', poll every {args.poll_ms:g} ms' if 'status' in args.modes else ''}"
    )
    baseline = None if args.no_baseline else await bench_baseline(args, tmp)
    rows = []
    configs = parse_configs(args.configs)
    profile_at = parse_configs(args.profile_config)[0] if args.profile else None
    for w, c in configs:
        rows.append(await bench_anypod(args, tmp, w, c, profile=(w, c) == profile_at))
    print("\n" + table(rows, baseline, args.modes))
    print("(latencies in ms; throughput latency = submit .. COMPLETED seen by the client)\n")
    for line in verdicts(rows, baseline):
        print(line)
    if args.json:
        doc = {
            "machine": {
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "args": vars(args),
            "source_at_start": source_at_start,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "targets": {
                "runsync_p50_ms": TARGET_P50_MS,
                "runsync_p99_ms": TARGET_P99_MS,
                "jobs_s": TARGET_JOBS_S,
            },
            "baseline": asdict(baseline) if baseline else None,
            "anypod": [asdict(r) for r in rows],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        print(f"\nwrote {args.json}")
    if not args.keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def source_fingerprint() -> str:
    """git HEAD plus a short hash of src/anypod as it is now (the tree may have uncommitted
    edits, and each setup starts a fresh server from the current files)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((ROOT / "src" / "anypod").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        head = ""
    return f"{head or '?'}+src:{h.hexdigest()[:10]}"


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", type=int, default=5000, help="jobs per throughput phase")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (throughput)")
    p.add_argument("--samples", type=int, default=2000, help="sequential runsync samples")
    p.add_argument("--warmup", type=int, default=200, help="runsync warm-up requests")
    p.add_argument(
        "--configs",
        default="1x1,2x1,1x8,2x8,fake8",
        help="anypod setups, comma-separated: WORKERSxCONCURRENCY (embedded `anypod worker`s "
        "running the noop handler), or fakeK (diagnostic: --workers 0 plus a minimal aiohttp "
        "worker with K take/done loops and no handler process)",
    )
    p.add_argument(
        "--modes",
        default="status-sync,status",
        help="how clients wait in the throughput phase: status-sync, status",
    )
    p.add_argument("--poll-ms", type=float, default=20.0, help="poll interval for 'status'")
    p.add_argument("--no-baseline", action="store_true", help="skip the runpod test server")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 300 samples, 1000 jobs, setups 1x1 and 2x8"
    )
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the server, a worker parent and a handler child during extra "
        "throughput and runsync phases; raw stacks go to DIR",
    )
    p.add_argument("--profile-config", default="1x8", help="setup to profile (WxC or fakeK)")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    p.add_argument(
        "--profile-blocking",
        action="store_true",
        help="let py-spy pause the process per sample (exact stacks, but stopped "
        "threads count as busy and the run slows a lot)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="py-spy --gil: only samples of the thread holding the GIL",
    )
    p.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native: C frames too (uvloop, httptools, sqlite3)",
    )
    p.add_argument("--log-level", help="ANYPOD_LOG_LEVEL for the server (default: its own)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with server logs")
    args = p.parse_args()
    if args.quick:
        args.samples, args.warmup, args.jobs = 300, 50, 1000
        if args.configs == p.get_default("configs"):
            args.configs = "1x1,2x8"
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in ("status-sync", "status"):
            p.error(f"unknown mode {m!r}")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _fake_worker_main() -> None:
    """``throughput.py --fake-worker BASE TOKEN SLOTS``: run only the fake worker (a subprocess)."""
    base, token, slots = sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        import uvloop
    except ImportError:
        asyncio.run(fake_worker(base, token, slots))
    else:
        uvloop.run(fake_worker(base, token, slots))


if __name__ == "__main__" and sys.argv[1:2] == ["--fake-worker"]:
    _fake_worker_main()
    sys.exit(0)

if __name__ == "__main__":
    options = cli()
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        try:
            import uvloop
        except ImportError:
            code = asyncio.run(main(options))
        else:
            code = uvloop.run(main(options))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    finally:
        Proc.stop_all()
    sys.exit(code)
