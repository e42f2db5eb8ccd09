#!/usr/bin/env python
"""Scale-out on PostgreSQL vs the Celery baseline: the same no-op job, the same load generator.

    python benchmarks/scaleout.py                         # 3000 jobs, 32 clients, all rows
    python benchmarks/scaleout.py --quick                 # 600 jobs, fewer rows (~1 min)
    python benchmarks/scaleout.py --rounds 3 --json out.json --plot docs/img/scaleout.png

Rows, in one run, each on a fresh database:

* ``celery c=K poll=P``: ``benchmarks/baselines/celery_stack`` (uvicorn/FastAPI + PostgreSQL row
  + Redis + Celery prefork worker, ``run.py --celery-concurrency K``), started from its own venv;
  clients POST ``/jobs`` and poll ``GET /jobs/{id}`` every P ms (``--celery-poll-ms``), for each
  ``--celery-concurrency``. Its database is a fresh one (not ``test``), its broker Redis db
  ``--celery-redis-db`` (FLUSHDB'd by the stack).
* ``anypod pg 1 API``: ``anypod server --endpoint noop`` on a fresh PostgreSQL database plus ONE
  ``anypod worker benchmarks/handlers/noop.py --concurrency K`` (``--anypod-concurrency``).
* ``anypod pg 2 API``: two ``anypod server`` replicas on one database; the worker gets both
  ``--server`` URLs; client i talks to replica i % 2.
* ``anypod sqlite``: ``anypod serve benchmarks/handlers/noop.py --workers 1 --concurrency K``.

anypod clients POST ``/v2/noop/run`` then long-poll ``GET /v2/noop/status-sync/{id}?wait=60000``
(``--also-poll`` adds a phase per anypod setup that polls ``/status/{id}`` every 50 ms instead,
the Celery clients' behaviour). The generator is the Celery baseline's own
(``baselines/celery_stack/loadgen.py``: shared job counter, C closed-loop clients, latency = POST
sent .. terminal status seen, nearest-rank p50/p99), given one target per client.

Per row: ``--warmup`` jobs (not measured), then ``--jobs`` jobs measured; every phase stops
taking new jobs after 55 s. CPU seconds per process (API, worker parents, handler children /
Celery children, Redis, the PostgreSQL backends of the row's database, this client) are read
from /proc around the measured phase and printed as CPU ms per job, with what everything else on
the machine used meanwhile. Ratios are anypod / Celery; targets: >= 2x the baseline's jobs/s and
<= 1/2 its p50 and p99 latency, against the Celery default (c=2, poll 50 ms) and against the
best Celery row.

Every subprocess runs in its own session and is stopped (SIGTERM, then SIGKILL of its group and
any descendant) on exit, error, SIGTERM or Ctrl-C; the time each took to exit after SIGTERM is
printed (a server that needs SIGKILL is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELERY_DIR = HERE / "baselines" / "celery_stack"
sys.path[:0] = [str(HERE), str(CELERY_DIR)]

import loadgen  # noqa: E402  (the Celery baseline's generator; needs only aiohttp)
import throughput as tp  # noqa: E402  (Proc, /proc CPU helpers, health wait)

HANDLER = "benchmarks/handlers/noop.py"
ENDPOINT = "noop"
PHASE_LIMIT = 55.0
CELERY_PY = CELERY_DIR / ".venv" / "bin" / "python"
TARGET_SPEEDUP, TARGET_LATENCY = 2.0, 0.5
PY = sys.executable


# ----------------------------------------------------------------------------- databases


def db_url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


async def create_db(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return db_url(admin_url, name)


async def drop_db(admin_url: str, name: str) -> None:
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def pg_backends(admin_url: str, dbname: str) -> list[int]:
    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
    finally:
        await conn.close()
    return [r[0] for r in rows]


def run_cli(*args: str, timeout: float = 60) -> str:
    out = subprocess.run(
        [PY, "-m", "anypod", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode:
        raise RuntimeError(f"anypod {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def mint_token(dsn: str, server: str) -> str:
    env = run_cli("worker-env", "--endpoint", ENDPOINT, "--database", dsn, "--server", server)
    return next(
        line.split("=", 1)[1] for line in env.splitlines() if line.startswith("RUNPOD_AI_API_KEY=")
    )


# ----------------------------------------------------------------------------- processes


def pids_of_comm(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    found.append(int(entry))
    return found


def stop_timed(proc: tp.Proc, grace: float) -> str:
    """SIGTERM the group, wait up to ``grace``; then :meth:`Proc.stop` (SIGKILL leftovers).
    Returns how it went, e.g. ``"exited 0.4 s"`` or ``"KILLED after 8 s"``."""
    if not proc.alive():
        proc.stop(grace=0.1)
        return f"had exited ({proc.popen.returncode})"
    family = {p: tp.cmdline(p) for p in [proc.pid, *tp.descendants(proc.pid)]}
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.popen.wait(grace)
        how = f"exited {time.monotonic() - t0:.1f} s"
    except subprocess.TimeoutExpired:
        how = f"KILLED after {grace:.0f} s"
    proc.stop(grace=0.1)
    for pid, cmd in family.items():  # anything of ours that outlived its parent (own session)
        if tp._not_zombie(pid) and tp.cmdline(pid) == cmd:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            how += f"; SIGKILLed leftover {pid}"
    return how


RoleFn = Callable[[], dict[str, list[int]]]


@contextlib.contextmanager
def cpu_meter(roles_now: RoleFn) -> Iterator[dict[str, float]]:
    """CPU seconds per role while the block ran. ``roles_now`` is called before and after; a
    pid seen only after (a connection opened mid-phase) counts with all its CPU."""
    before_roles = roles_now()
    before = {pid: tp.cpu_seconds(pid) for pids in before_roles.values() for pid in pids}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    m0 = tp.machine_busy()
    t0 = time.perf_counter()
    result: dict[str, float] = {}
    yield result
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    after_roles = roles_now()
    for role in {*before_roles, *after_roles}:
        pids = set(before_roles.get(role, [])) | set(after_roles.get(role, []))
        result[role] = sum(max(tp.cpu_seconds(p) - before.get(p, 0.0), 0.0) for p in pids)
    result["client"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    m1 = tp.machine_busy()
    result["others"] = max(m1[0] - m0[0] - sum(result.values()), 0.0)
    result["wall"] = wall


# ----------------------------------------------------------------------------- load


def anypod_target(base: str, poll: bool) -> loadgen.Target:
    status = "status/{id}" if poll else "status-sync/{id}?wait=60000"
    return loadgen.Target(
        submit_url=f"{base}/v2/{ENDPOINT}/run",
        status_url=f"{base}/v2/{ENDPOINT}/{status}",
        done=frozenset({"COMPLETED"}),
        failed=frozenset({"FAILED", "CANCELLED", "TIMED_OUT"}),
    )


def bounded(n: int, limit: float) -> Iterator[int]:
    stop_at = time.perf_counter() + limit
    for i in range(n):
        if time.perf_counter() > stop_at:
            return
        yield i


async def drive(
    targets: list[loadgen.Target], jobs: int, clients: int, poll_s: float
) -> tuple[loadgen.Result, list[float]]:
    """loadgen's closed-loop clients (shared job counter); client i uses targets[i % len]."""
    tally = loadgen._Tally()
    indices = bounded(jobs, PHASE_LIMIT)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients + 4, keepalive_timeout=120),
        timeout=aiohttp.ClientTimeout(total=90),
    ) as session:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                loadgen._client(
                    session,
                    targets[i % len(targets)],
                    indices,
                    loadgen.default_payload,
                    poll_s,
                    tally,
                )
                for i in range(clients)
            )
        )
        wall = time.perf_counter() - t0
    return loadgen._result(tally, jobs, clients, poll_s, wall), tally.latencies


# ----------------------------------------------------------------------------- rows


@dataclass
class Phase:
    row: str
    round: int
    jobs_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    completed: int
    failed: int
    wall_s: float
    polls_per_job: float
    cpu_ms_per_job: dict[str, float]
    others_cores: float
    errors: list[str] = field(default_factory=list)


@dataclass
class SetupLog:
    name: str
    command: list[str]
    shutdown: dict[str, str] = field(default_factory=dict)
    log_errors: list[str] = field(default_factory=list)


async def measure(
    name: str,
    rnd: int,
    targets: list[loadgen.Target],
    poll_s: float,
    roles_now: RoleFn,
    args: argparse.Namespace,
) -> Phase:
    await drive(targets, args.warmup, args.clients, poll_s)
    with cpu_meter(roles_now) as cpu:
        res, _ = await drive(targets, args.jobs, args.clients, poll_s)
    n = max(res.completed, 1)
    ph = Phase(
        row=name,
        round=rnd,
        jobs_s=res.jobs_per_s,
        p50_ms=res.p50_ms,
        p99_ms=res.p99_ms,
        mean_ms=res.mean_ms,
        completed=res.completed,
        failed=res.failed,
        wall_s=res.wall_s,
        polls_per_job=res.polls / n,
        cpu_ms_per_job={
            k: 1000 * v / n for k, v in cpu.items() if k not in ("wall", "others") and v > 0
        },
        others_cores=cpu["others"] / cpu["wall"],
        errors=res.errors[:3],
    )
    trunc = " TRUNCATED (55 s)" if res.completed + res.failed < args.jobs else ""
    print(
        f"  {name}: {ph.jobs_s:.0f} jobs/s, p50 {ph.p50_ms:.1f} ms, p99 {ph.p99_ms:.1f} ms "
        f"({ph.completed} ok, {ph.failed} failed, {ph.polls_per_job:.2f} status GETs/job, "
        f"{ph.wall_s:.1f} s){trunc}" + (f"\n    errors: {ph.errors}" if ph.errors else ""),
        flush=True,
    )
    ours = sum(ph.cpu_ms_per_job.values())
    print(
        "    CPU ms/job: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ph.cpu_ms_per_job.items())
        + f" | total {ours:.2f}; other processes {ph.others_cores:.2f} cores (of {os.cpu_count()})",
        flush=True,
    )
    return ph


def grep_errors(path: Path, limit: int = 5) -> list[str]:
    keys = ("ERROR", "Traceback", "CRITICAL", "exception", "Exception")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln.strip()[:300] for ln in lines if any(k in ln for k in keys)][:limit]


async def wait_log_line(proc: tp.Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.log_path.read_text(errors="replace"):
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name}: no {text!r} after {timeout}s:\n{proc.tail()}")


async def celery_setup(
    args: argparse.Namespace, tmp: Path, conc: int, rnd: int, logs: list[SetupLog]
) -> list[Phase]:
    dbname = f"scaleout_celery_{os.getpid()}"
    dsn = await create_db(args.pg, dbname)
    port = tp.free_port()
    run_py = str(CELERY_DIR / "run.py")  # by path: it imports its siblings from its own folder
    argv = [str(CELERY_PY), run_py, "--port", str(port), "--celery-concurrency", str(conc)]
    argv += ["--api-workers", "1"]
    env = {
        "CELERY_STACK_PG_DSN": dsn,
        "CELERY_STACK_BROKER_URL": f"redis://127.0.0.1:6379/{args.celery_redis_db}",
    }
    log = SetupLog(f"celery c={conc}", argv[1:])
    print(f"\n== celery c={conc}: {' '.join(argv[1:])}  (load avg {os.getloadavg()[0]:.2f})")
    stack = tp.Proc(f"celery c={conc}", argv, tmp / f"celery-c{conc}-r{rnd}.log", env=env)
    phases = []
    try:
        # run.py resets the table/broker, waits for /health and a probe job, then says so
        await wait_log_line(stack, "stack up at", 90)
        redis_pids = pids_of_comm("redis-server")

        def roles() -> dict[str, list[int]]:
            kids = tp.descendants(stack.pid)
            api = [p for p in kids if "uvicorn" in tp.cmdline(p)]
            main = [p for p in tp.children(stack.pid) if "celery" in tp.cmdline(p)]
            pool = [p for m in main for p in tp.descendants(m)]
            return {
                "api": api,
                "celery main": main,
                "celery children": pool,
                "redis": redis_pids,
                "postgres": asyncio_run_sync(pg_backends(args.pg, dbname)),
            }

        for poll_ms in args.celery_poll_ms:
            name = f"celery c={conc} poll {poll_ms:g} ms"
            target = loadgen.celery_target(f"http://127.0.0.1:{port}")
            phases.append(await measure(name, rnd, [target], poll_ms / 1000, roles, args))
    finally:
        log.shutdown["stack"] = stop_timed(stack, 40)
        log.log_errors = grep_errors(stack.log_path) + grep_errors(
            Path(_log_dir(stack.log_path)) / "celery.log"
        )
        await drop_db(args.pg, dbname)
        flush_redis(args.celery_redis_db)
    logs.append(log)
    return phases


def flush_redis(db: int) -> None:
    """Leave the broker db as we found it (empty); redis-py lives in the baseline's venv."""
    code = f"import redis; redis.Redis.from_url('redis://127.0.0.1:6379/{db}').flushdb()"
    with contextlib.suppress(Exception):
        subprocess.run([str(CELERY_PY), "-c", code], timeout=20, capture_output=True)


def _log_dir(run_log: Path) -> str:
    """run.py prints ``(logs: DIR)``; its uvicorn/celery logs live there."""
    text = run_log.read_text(errors="replace")
    marker = "(logs: "
    return text.split(marker, 1)[1].split(")", 1)[0] if marker in text else "/nonexistent"


def asyncio_run_sync(coro: Any) -> Any:
    """pg_stat_activity from inside the synchronous role callback: a short private loop in a
    thread (the callback runs on the benchmark's loop, which must not be re-entered)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result(timeout=10)


async def anypod_pg_setup(
    args: argparse.Namespace, tmp: Path, replicas: int, rnd: int, logs: list[SetupLog]
) -> list[Phase]:
    dbname = f"scaleout_anypod_{os.getpid()}_{replicas}"
    dsn = await create_db(args.pg, dbname)
    run_cli("migrate", "--database", dsn)
    ports = [tp.free_port() for _ in range(replicas)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    token = mint_token(dsn, urls[0])
    label = f"anypod pg {replicas} API"
    servers: list[tp.Proc] = []
    worker: tp.Proc | None = None
    log = SetupLog(label, [])
    print(f"\n== {label}  (load avg {os.getloadavg()[0]:.2f}; {tp.source_fingerprint()})")
    phases = []
    try:
        for i, port in enumerate(ports):
            argv = [PY, "-m", "anypod", "server", "--endpoint", ENDPOINT, "--database", dsn]
            argv += ["--port", str(port)]
            servers.append(
                tp.Proc(f"api{i + 1}", argv, tmp / f"pg{replicas}-api{i + 1}-r{rnd}.log")
            )
            log.command.append(" ".join(["anypod", *argv[3:]]))
        wargv = [PY, "-m", "anypod", "worker", HANDLER, "--endpoint", ENDPOINT, "--token", token]
        for u in urls:
            wargv += ["--server", u]
        wargv += ["--concurrency", str(args.anypod_concurrency)]
        worker = tp.Proc("worker", wargv, tmp / f"pg{replicas}-worker-r{rnd}.log")
        log.command.append(" ".join(["anypod", *wargv[3:]]).replace(token, "$TOKEN"))
        for cmd in log.command:
            print(f"  {cmd}")
        async with aiohttp.ClientSession() as s:
            for srv, u in zip(servers, urls, strict=True):
                await tp.wait_health(s, u, 1, srv)
        wk = worker

        def roles() -> dict[str, list[int]]:
            kids = tp.descendants(wk.pid)
            return {
                "api": [s.pid for s in servers],
                "worker": [wk.pid],
                "handler": [p for p in kids if "spawn_main" in tp.cmdline(p)],
                "postgres": asyncio_run_sync(pg_backends(args.pg, dbname)),
            }

        modes = [False, True] if args.also_poll else [False]
        for poll in modes:
            name = f"{label}" + (" poll 50 ms" if poll else "")
            targets = [anypod_target(u, poll) for u in urls]
            phases.append(await measure(name, rnd, targets, 0.05 if poll else 0.0, roles, args))
    finally:
        if worker is not None:
            log.shutdown["worker"] = stop_timed(worker, 10)
        for i, srv in enumerate(servers):
            log.shutdown[f"api{i + 1}"] = stop_timed(srv, args.server_grace)
        for p in [*servers, *([worker] if worker else [])]:
            log.log_errors += grep_errors(p.log_path)
        await drop_db(args.pg, dbname)
    logs.append(log)
    return phases


async def anypod_sqlite_setup(
    args: argparse.Namespace, tmp: Path, rnd: int, logs: list[SetupLog]
) -> list[Phase]:
    port = tp.free_port()
    db = tmp / f"sqlite-r{rnd}.db"
    argv = [PY, "-m", "anypod", "serve", HANDLER, "--workers", "1"]
    argv += ["--concurrency", str(args.anypod_concurrency), "--port", str(port)]
    argv += ["--database", f"sqlite:///{db}"]
    label = "anypod sqlite (serve)"
    log = SetupLog(label, [" ".join(["anypod", *argv[3:]])])
    print(f"\n== {label}: {log.command[0]}  (load avg {os.getloadavg()[0]:.2f})")
    proc = tp.Proc(label, argv, tmp / f"sqlite-r{rnd}.log")
    phases = []
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            await tp.wait_health(s, url, 1, proc)

        def roles() -> dict[str, list[int]]:
            r = proc.roles()
            return {"api": r["server"], "worker": r["worker"], "handler": r["handler"]}

        modes = [False, True] if args.also_poll else [False]
        for poll in modes:
            name = label + (" poll 50 ms" if poll else "")
            targets = [anypod_target(url, poll)]
            phases.append(await measure(name, rnd, targets, 0.05 if poll else 0.0, roles, args))
    finally:
        log.shutdown["serve"] = stop_timed(proc, args.server_grace)
        log.log_errors = grep_errors(proc.log_path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{db}{suffix}").unlink()
    logs.append(log)
    return phases


# ----------------------------------------------------------------------------- report


@dataclass
class Agg:
    row: str
    n: int
    jobs_s: float
    p50_ms: float
    p99_ms: float
    jobs_s_range: tuple[float, float]
    p50_range: tuple[float, float]
    p99_range: tuple[float, float]
    cpu_ms_per_job: dict[str, float]
    failed: int


def aggregate(phases: list[Phase]) -> list[Agg]:
    order: list[str] = []
    for p in phases:
        if p.row not in order:
            order.append(p.row)
    out = []
    for row in order:
        ps = [p for p in phases if p.row == row]
        roles = {k for p in ps for k in p.cpu_ms_per_job}
        cpu = {k: statistics.median(p.cpu_ms_per_job.get(k, 0.0) for p in ps) for k in roles}
        cpu = {k: cpu[k] for k in sorted(cpu, key=lambda k: -cpu[k])}
        out.append(
            Agg(
                row=row,
                n=len(ps),
                jobs_s=statistics.median(p.jobs_s for p in ps),
                p50_ms=statistics.median(p.p50_ms for p in ps),
                p99_ms=statistics.median(p.p99_ms for p in ps),
                jobs_s_range=(min(p.jobs_s for p in ps), max(p.jobs_s for p in ps)),
                p50_range=(min(p.p50_ms for p in ps), max(p.p50_ms for p in ps)),
                p99_range=(min(p.p99_ms for p in ps), max(p.p99_ms for p in ps)),
                cpu_ms_per_job=cpu,
                failed=sum(p.failed for p in ps),
            )
        )
    return out


def md_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def rng(lo: float, hi: float, fmt: str) -> str:
    return f" ({lo:{fmt}}-{hi:{fmt}})"


def report(aggs: list[Agg], rounds: int) -> list[str]:
    many = rounds > 1
    rows = []
    for a in aggs:
        rows.append(
            [
                a.row,
                f"{a.jobs_s:.0f}" + (rng(*a.jobs_s_range, ".0f") if many else ""),
                f"{a.p50_ms:.1f}" + (rng(*a.p50_range, ".1f") if many else ""),
                f"{a.p99_ms:.1f}" + (rng(*a.p99_range, ".1f") if many else ""),
                str(a.failed),
            ]
        )
    what = f"median of {rounds} rounds (range)" if many else "one round"
    print(f"\n### Results ({what}; latency = POST .. terminal status seen by the client)\n")
    print(md_table(["row", "jobs/s", "p50 ms", "p99 ms", "failed"], rows))
    roles = []
    for a in aggs:
        for k in a.cpu_ms_per_job:
            if k not in roles:
                roles.append(k)
    cpu_rows = [
        [a.row]
        + [f"{a.cpu_ms_per_job[k]:.2f}" if k in a.cpu_ms_per_job else "-" for k in roles]
        + [f"{sum(a.cpu_ms_per_job.values()):.2f}"]
        for a in aggs
    ]
    print("\n### CPU ms per job, by process (median)\n")
    print(md_table(["row", *roles, "total"], cpu_rows))

    celery = [a for a in aggs if a.row.startswith("celery")]
    anypod = [a for a in aggs if a.row.startswith("anypod")]
    verdict_lines: list[str] = []
    if not celery or not anypod:
        return verdict_lines
    default = next((a for a in celery if "c=2 poll 50 ms" in a.row), celery[0])
    best_tp = max(celery, key=lambda a: a.jobs_s)
    best_p50 = min(celery, key=lambda a: a.p50_ms)
    best_p99 = min(celery, key=lambda a: a.p99_ms)
    print(
        f"\n### anypod / Celery (targets: jobs/s >= {TARGET_SPEEDUP:g}x, p50 and p99 <= "
        f"{TARGET_LATENCY:g}x)\n"
    )
    vrows = []
    for a in anypod:
        for ref_name, tput, p50, p99 in (
            (default.row, default, default, default),
            ("best Celery row each", best_tp, best_p50, best_p99),
        ):
            r_tp = a.jobs_s / tput.jobs_s
            r50 = a.p50_ms / p50.p50_ms
            r99 = a.p99_ms / p99.p99_ms
            ok = r_tp >= TARGET_SPEEDUP and r50 <= TARGET_LATENCY and r99 <= TARGET_LATENCY
            vrows.append(
                [
                    a.row,
                    ref_name,
                    f"{r_tp:.2f}x",
                    f"{r50:.3f}x",
                    f"{r99:.3f}x",
                    "MET" if ok else "MISSED",
                ]
            )
            verdict_lines.append(
                f"{a.row} vs {ref_name}: jobs/s {r_tp:.2f}x "
                f"{'MET' if r_tp >= TARGET_SPEEDUP else 'MISSED'}, p50 {r50:.3f}x "
                f"{'MET' if r50 <= TARGET_LATENCY else 'MISSED'}, p99 {r99:.3f}x "
                f"{'MET' if r99 <= TARGET_LATENCY else 'MISSED'}"
            )
    print(md_table(["anypod row", "vs", "jobs/s", "p50", "p99", "targets"], vrows))
    print(f"\n(best Celery rows: jobs/s {best_tp.row}; p50 {best_p50.row}; p99 {best_p99.row})")
    return verdict_lines


def plot(aggs: list[Agg], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    names = [a.row.replace(" poll ", "\npoll ").replace(" (serve)", "\n(serve)") for a in aggs]
    colors = ["#9e9e9e" if a.row.startswith("celery") else "#1f77b4" for a in aggs]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.4))
    xs = list(range(len(aggs)))
    err = [
        [a.jobs_s - a.jobs_s_range[0] for a in aggs],
        [a.jobs_s_range[1] - a.jobs_s for a in aggs],
    ]
    bars = ax1.bar(xs, [a.jobs_s for a in aggs], color=colors, yerr=err, capsize=3)
    ax1.bar_label(bars, labels=[f"{a.jobs_s:.0f}" for a in aggs], padding=2, fontsize=8)
    ax1.set_ylabel("jobs/s (higher is better; bars = median, whiskers = range)")
    ax1.set_title("throughput")
    w = 0.4
    b50 = ax2.bar([i - w / 2 for i in xs], [a.p50_ms for a in aggs], w, color=colors)
    b99 = ax2.bar(
        [i + w / 2 for i in xs],
        [a.p99_ms for a in aggs],
        w,
        color=colors,
        alpha=0.5,
        hatch="//",
    )
    ax2.bar_label(b50, labels=[f"{a.p50_ms:.0f}" for a in aggs], padding=2, fontsize=7)
    ax2.bar_label(b99, labels=[f"{a.p99_ms:.0f}" for a in aggs], padding=2, fontsize=7)
    ax2.set_yscale("log")
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    ax2.yaxis.set_minor_formatter(ScalarFormatter())
    ax2.tick_params(axis="y", which="minor", labelsize=7)
    ax2.set_ylabel("submit -> result latency, ms (log scale; lower is better)")
    ax2.set_title("latency: p50 (solid), p99 (hatched)")
    roles = sorted(
        {k for a in aggs for k in a.cpu_ms_per_job},
        key=lambda k: -max(a.cpu_ms_per_job.get(k, 0.0) for a in aggs),
    )
    bottom = [0.0] * len(aggs)
    cmap = plt.get_cmap("tab20")
    for n, role in enumerate(roles):
        vals = [a.cpu_ms_per_job.get(role, 0.0) for a in aggs]
        ax3.bar(xs, vals, bottom=bottom, label=role, color=cmap(n))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax3.bar_label(ax3.containers[-1], labels=[f"{b:.1f}" for b in bottom], padding=2, fontsize=8)
    ax3.set_ylabel("CPU ms per job, all processes (lower is better)")
    ax3.set_title("CPU per job, by process")
    ax3.legend(fontsize=7, ncol=2)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(xs, names, rotation=40, ha="right", fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path}")


def replot(json_path: str, out: str) -> None:
    doc = json.loads(Path(json_path).read_text())
    aggs = []
    for r in doc["rows"]:
        for key in ("jobs_s_range", "p50_range", "p99_range"):
            r[key] = tuple(r[key])
        aggs.append(Agg(**r))
    a = doc["args"]
    plot(aggs, Path(out), plot_title(a["jobs"], a["clients"], a["rounds"]))


def plot_title(jobs: int, clients: int, rounds: int) -> str:
    return (
        f"no-op job, {jobs} jobs, {clients} closed-loop clients, {os.cpu_count()}-core VM "
        f"shared with other work; median of {rounds} round(s); "
        "grey = Celery baseline, blue = anypod"
    )


# ----------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="anypod-scaleout-"))
    conn = await asyncpg.connect(args.pg)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"PostgreSQL {pg_version} (synchronous_commit={sync_commit}); source "
        f"{tp.source_fingerprint()}; logs in {tmp}\n"
        f"{args.jobs} jobs after {args.warmup} warm-up, {args.clients} clients, "
        f"{args.rounds} round(s); anypod worker concurrency {args.anypod_concurrency}; "
        f"celery concurrency {args.celery_concurrency}, poll {args.celery_poll_ms} ms"
    )
    if not CELERY_PY.exists() and args.celery_concurrency:
        raise SystemExit(
            f"{CELERY_PY} missing: cd {CELERY_DIR} && python3 -m venv .venv && "
            ".venv/bin/pip install -r requirements.txt"
        )
    phases: list[Phase] = []
    logs: list[SetupLog] = []
    for rnd in range(args.rounds):
        if args.rounds > 1:
            print(f"\n######## round {rnd + 1}/{args.rounds}")
        for conc in args.celery_concurrency:
            phases += await celery_setup(args, tmp, conc, rnd, logs)
        for setup in args.setups:
            if setup == "pg1":
                phases += await anypod_pg_setup(args, tmp, 1, rnd, logs)
            elif setup == "pg2":
                phases += await anypod_pg_setup(args, tmp, 2, rnd, logs)
            elif setup == "sqlite":
                phases += await anypod_sqlite_setup(args, tmp, rnd, logs)
    aggs = aggregate(phases)
    verdicts = report(aggs, args.rounds)
    print()
    for line in verdicts:
        print(line)
    print("\nshutdown after SIGTERM / errors in logs:")
    for lg in logs:
        print(f"  {lg.name}: " + ", ".join(f"{k} {v}" for k, v in lg.shutdown.items()))
        for e in lg.log_errors:
            print(f"      log: {e}")
    if args.plot:
        plot(aggs, Path(args.plot), plot_title(args.jobs, args.clients, args.rounds))
    if args.json:
        doc = {
            "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
            "postgres": pg_version,
            "args": vars(args),
            "source": tp.source_fingerprint(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "phases": [asdict(p) for p in phases],
            "rows": [asdict(a) for a in aggs],
            "setups": [asdict(lg) for lg in logs],
            "verdicts": verdicts,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
        print(f"wrote {args.json}")
    if not args.keep_logs:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300, help="jobs run before each measured phase")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1, help="repeat every row; medians reported")
    p.add_argument("--setups", default="pg1,pg2,sqlite", help="anypod rows: pg1, pg2, sqlite")
    p.add_argument("--anypod-concurrency", type=int, default=8, help="anypod worker --concurrency")
    p.add_argument("--celery-concurrency", default="2,8", help="celery prefork sizes, one row each")
    p.add_argument("--celery-poll-ms", default="50,10", help="celery client poll intervals")
    p.add_argument("--celery-redis-db", type=int, default=9, help="broker db (FLUSHDB'd)")
    p.add_argument("--also-poll", action="store_true", help="anypod rows polled every 50 ms too")
    p.add_argument("--server-grace", type=float, default=8.0, help="seconds before SIGKILL")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--quick", action="store_true", help="600 jobs, celery c=2 poll 50 ms only")
    p.add_argument("--json", help="write every phase and the medians here")
    p.add_argument("--plot", help="write a PNG (e.g. docs/img/scaleout.png)")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--replot", metavar="JSON", help="only redraw --plot from a --json file")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.warmup = 600, 100
        if args.celery_concurrency == p.get_default("celery_concurrency"):
            args.celery_concurrency = "2"
        if args.celery_poll_ms == p.get_default("celery_poll_ms"):
            args.celery_poll_ms = "50"
    args.celery_concurrency = [int(c) for c in args.celery_concurrency.split(",") if c.strip()]
    args.celery_poll_ms = [float(c) for c in args.celery_poll_ms.split(",") if c.strip()]
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in args.setups:
        if s not in ("pg1", "pg2", "sqlite"):
            p.error(f"unknown setup {s!r}")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    options = cli()
    if options.replot:
        replot(options.replot, options.plot or "docs/img/scaleout.png")
        sys.exit(0)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        tp.Proc.stop_all()
    sys.exit(code)
