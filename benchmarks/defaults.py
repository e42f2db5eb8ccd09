"""Fast by default (issue 8): anypod with no tuning flags next to the Celery baseline with its
defaults, the same no-op job, the same load generator, in one run.

    python -m benchmarks.defaults                     # 4000 jobs, 32 clients, sweep 1,2,4 (~2 min)
    python -m benchmarks.defaults --workers none --closed-loop none   # the verdicts alone
    python -m benchmarks.defaults --quick             # 800 jobs, sweep 1,2 (~1 min)
    python -m benchmarks.defaults --json o.json --plot docs/img/defaults_workers.png
    python -m benchmarks.defaults --replot o.json --plot docs/img/defaults_workers.png

Servers, each on a fresh database:

* ``anypod sqlite W=1``: ``anypod serve benchmarks/handlers/noop.py --database
  sqlite:///<tmp>/<fresh>.db --port P``, nothing else (defaults: ``--workers 1 --concurrency
  1``); ``W=2``, ``W=4``: the same plus ``--workers W``.
* ``anypod pg W``: ``anypod migrate --database postgresql://.../<fresh>``, then the same
  ``anypod serve`` line with that ``--database``: one API replica with its embedded workers.
* ``celery c=K``: ``benchmarks/baselines/celery_stack/run.py --celery-concurrency K
  --api-workers 1`` (its defaults: K = 2, one API process) from its own venv, fresh database and
  Redis db ``--celery-redis-db``; K = 1, 2, 4.

Headline load, the issue's measurement, ``submit-all`` (``benchmarks.harness.load.submit_all``,
the same for both): ``--clients`` tasks take job indices from one shared iterator and submit
(anypod ``POST /v2/noop/run``, Celery ``POST /jobs``; the Celery loadgen's payload) as fast as
answers come until ``--jobs`` are in; then ``--clients`` tasks poll (anypod ``GET
/v2/noop/status/{id}``, Celery ``GET /jobs/{id}``) the jobs not done yet, cycling through them
in submit order, with no sleep except ``--pause-ms`` when a full pass over the outstanding jobs
saw none end, until every job is COMPLETED (anything else terminal, or an error, is a failure).
The workers run all along: the queue drains while submissions go on. jobs/s = completed / (first
submit .. last job seen COMPLETED); also the submit rate (phase 1 alone), status GETs per job,
and CPU ms per job per process from /proc (API, worker parents / Celery main, handler children
/ Celery children, Redis, the row's PostgreSQL backends, this client). ``--warmup`` jobs the
same way first, unmeasured. Every server of the sweep runs it.

Secondary rows (``--closed-loop default``: on the default-flag servers only; ``all``, ``none``):
the closed-loop clients of ``benchmarks.scaleout``: each client submits one job, then sleeps
``--poll-ms`` before every status GET until it is done, then takes the next (``poll``), or
long-polls ``GET /v2/noop/status-sync/{id}?wait=60000`` (``status-sync``, anypod only). A client
that sleeps P before every poll finishes at most one job per P, so C such clients cap any server
at C / P jobs/s (32 / 50 ms = 640): those rows measure the clients, not the server.

Verdicts (submit-all, default flags: anypod W=1 vs celery c=2): anypod SQLite jobs/s >= 5x
Celery's, anypod PostgreSQL (one replica) >= 3x. Sweep: submit-all jobs/s against the worker
count (anypod ``--workers``, Celery ``--concurrency``), plotted with ``--plot``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks import scaleout
from benchmarks.harness import cpu, load, pg, procs, report, stats, sut
from benchmarks.scaleout import Phase, Roles, Rows

TARGETS = {"sqlite": 5.0, "pg": 3.0}  # anypod jobs/s / Celery jobs/s, both with defaults
CELERY_DEFAULT = 2  # run.py's --celery-concurrency default
DEFAULT = {"celery": CELERY_DEFAULT, "sqlite": 1, "pg": 1}
WAITS = ("poll", "status-sync")
SETUPS = ("celery", "sqlite", "pg")
CLOSED_LOOP = ("default", "all", "none")
SUBMIT_ALL = "submit-all"


def wait_name(wait: str, poll_ms: float) -> str:
    return f"poll {poll_ms:g} ms" if wait == "poll" else wait


def row_name(setup: str, n: int, pattern: str, poll_ms: float) -> str:
    """``celery c=2 submit-all``, ``anypod sqlite W=1 submit-all``, ``celery c=2 poll 50 ms``
    (scaleout's name for it), ``anypod pg W=1 status-sync``."""
    shown = SUBMIT_ALL if pattern == SUBMIT_ALL else wait_name(pattern, poll_ms)
    return f"celery c={n} {shown}" if setup == "celery" else f"anypod {setup} W={n} {shown}"


@dataclass
class Drained:
    """A submit-all phase: the load generator's outcome and the CPU it cost."""

    row: str
    outcome: load.SubmitAll
    cpu_ms_per_job: dict[str, float]
    others_cores: float


async def submit_all(
    name: str, target: load.Target, roles: Roles, args: argparse.Namespace
) -> Drained:
    """``--warmup`` jobs submit-all, then ``--jobs`` measured (CPU from /proc meanwhile)."""
    pause = args.pause_ms / 1000
    async with load.session(args.clients + 4, timeout=90) as s:
        await load.submit_all(s, target, args.warmup, args.clients, scaleout.payload, pause)
        with cpu.Meter(roles) as meter:
            out = await load.submit_all(s, target, args.jobs, args.clients, scaleout.payload, pause)
    print(f"  {name}: {out.describe()}\n    CPU ms/job: {meter.usage.line(out.completed)}")
    ms = {k: v for k, v in meter.usage.ms_per_job(out.completed).items() if v > 0}
    return Drained(name, out, ms, meter.usage.cores(meter.usage.others))


def drained_figures(ph: Drained) -> dict[str, float]:
    out = ph.outcome
    return {
        "jobs_s": out.jobs_s,
        "submit_jobs_s": out.submit_jobs_s,
        "polls_per_job": out.polls_per_job,
        "wall_s": out.wall_s,
        "failed": out.failed,
        "others_cores": ph.others_cores,
        **{f"cpu {k}": v for k, v in ph.cpu_ms_per_job.items()},
    }


@contextlib.asynccontextmanager
async def celery_stack(
    reg: procs.Registry, args: argparse.Namespace, conc: int
) -> AsyncIterator[tuple[str, Roles]]:
    """The Celery baseline (as ``scaleout.celery_rows`` starts it) on a fresh database and an
    emptied Redis db; its base URL and its processes by role."""
    name, port = f"celery c={conc}", procs.free_port()
    argv = [str(scaleout.CELERY_PY), str(scaleout.CELERY_DIR / "run.py"), "--port", str(port)]
    argv += ["--celery-concurrency", str(conc), "--api-workers", "1"]
    print(f"\n== {name}: {' '.join(argv[1:])}  ({report.load_avg()})", flush=True)
    dbname = f"defaults_celery_{os.getpid()}"
    broker = f"redis://127.0.0.1:6379/{args.celery_redis_db}"
    async with pg.fresh_database(args.pg, dbname) as dsn:
        env = {"CELERY_STACK_PG_DSN": dsn, "CELERY_STACK_BROKER_URL": broker}
        stack = reg.start(name, argv, env)

        def roles() -> cpu.Roles:
            # " -m celery ", not "celery": uvicorn's argv[0] is .../celery_stack/.venv/bin/python
            main = [p for p in procs.children(stack.pid) if " -m celery " in procs.cmdline(p)]
            api = [p for p in procs.descendants(stack.pid) if " -m uvicorn " in procs.cmdline(p)]
            return {
                "api": api,
                "celery main": main,
                "celery children": [p for m in main for p in procs.descendants(m)],
                "redis": procs.matching(lambda cmd: cmd.startswith("redis-server")),
                "postgres": pg.backends(dbname),
            }

        try:
            await procs.wait_log(stack, "stack up at", 90)  # after /health and one probe job
            yield f"http://127.0.0.1:{port}", roles
        finally:
            logs = Path(stack.tail(1000).partition("(logs: ")[2].partition(")")[0] or "/-")
            reg.stop(stack, 40)
            reg.stopped[-1].log_errors.extend(procs.log_errors(logs / "celery.log"))
            if not reg.keep_logs and logs.name.startswith("celery_stack_"):  # run.py's log dir
                shutil.rmtree(logs, ignore_errors=True)
            code = f"import redis; redis.Redis.from_url({broker!r}).flushdb()"  # its venv has redis
            subprocess.run([str(scaleout.CELERY_PY), "-c", code], timeout=20, capture_output=True)


@contextlib.asynccontextmanager
async def anypod_serve(
    reg: procs.Registry, args: argparse.Namespace, db: str, workers: int
) -> AsyncIterator[tuple[str, Roles]]:
    """``anypod serve`` on a fresh SQLite file or PostgreSQL database, default flags but
    ``--workers`` (left out for 1); its base URL and its processes by role."""
    cli, label = sut.Anypod(args.src), f"anypod {db} W={workers}"
    flags = [] if workers == 1 else ["--workers", str(workers)]
    shown = " ".join(["anypod serve", sut.HANDLER, *flags, "--database", "..."])
    print(f"\n== {label}: {shown}  ({report.load_avg()}; {cli.identity()})", flush=True)
    async with contextlib.AsyncExitStack() as stack:
        dbname = None
        if db == "sqlite":
            dsn = f"sqlite:///{reg.dir / f'defaults-{workers}-{procs.free_port()}.db'}"
        else:
            dbname = f"defaults_anypod_{os.getpid()}_{workers}"
            dsn = await stack.enter_async_context(pg.fresh_database(args.pg, dbname))
            cli.run("migrate", "--database", dsn)
        proc, url = await cli.serve(
            reg, sut.HANDLER, *flags, "--database", dsn, workers=workers, name=label
        )

        def roles() -> cpu.Roles:
            tree = sut.roles(proc.pid, top="api")
            out = {k: tree[k] for k in ("api", "worker", "handler")}
            if dbname:
                out["postgres"] = pg.backends(dbname)
            return out

        try:
            yield url, roles
        finally:
            reg.stop(proc, args.server_grace)


async def server_rows(
    reg: procs.Registry, args: argparse.Namespace, setup: str, n: int
) -> tuple[Drained, list[Phase]]:
    """One server: the submit-all phase, then the closed-loop phases if this row gets them."""
    closed = args.closed_loop == "all" or (args.closed_loop == "default" and n == DEFAULT[setup])
    waits = [w for w in args.waits if setup != "celery" or w == "poll"] if closed else []
    server = celery_stack(reg, args, n) if setup == "celery" else anypod_serve(reg, args, setup, n)
    async with server as (url, roles):
        if setup == "celery":
            target = load.celery_target(url, 0.0)
        else:
            target = load.anypod_target(url, sut.ENDPOINT, 0.0)
        drained = await submit_all(row_name(setup, n, SUBMIT_ALL, 0), target, roles, args)
        phases = []
        for wait in waits:
            poll = args.poll_ms / 1000
            if setup == "celery":
                target = load.celery_target(url, poll)
            else:
                target = load.anypod_target(url, sut.ENDPOINT, poll if wait == "poll" else None)
            name = row_name(setup, n, wait, args.poll_ms)
            phases.append(await scaleout.measure(name, [target], roles, args))
        return drained, phases


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The default rows first (celery c=2, anypod W=1), then the rest of the sweep, interleaved
    by worker count so that drift of the box hits every setup alike."""
    first = [(s, DEFAULT[s]) for s in args.setups]
    rest = [(s, n) for n in args.workers for s in args.setups if (s, n) not in first]
    return first + rest


def total_cpu(f: dict[str, stats.Spread]) -> float:
    return sum(v.median for k, v in f.items() if k.startswith("cpu "))


def headline(rows: Rows, args: argparse.Namespace) -> list[str]:
    """The default-flag submit-all rows side by side, the ratios, PASS / FAIL lines."""
    lines: list[str] = []
    celery = row_name("celery", CELERY_DEFAULT, SUBMIT_ALL, 0)
    anypod = [row_name(s, 1, SUBMIT_ALL, 0) for s in ("sqlite", "pg") if s in args.setups]
    names = [n for n in [celery, *anypod] if n in rows]
    cells = [
        [
            n,
            f"{rows[n]['jobs_s'].median:.0f}",
            f"{rows[n]['submit_jobs_s'].median:.0f}",
            f"{rows[n]['polls_per_job'].median:.2f}",
            f"{rows[n]['wall_s'].median:.2f}",
            f"{rows[n]['failed'].hi:.0f}",
            f"{total_cpu(rows[n]):.2f}",
            f"{rows[n]['others_cores'].median:.2f}",
        ]
        for n in names
    ]
    print(
        f"\n### Headline, submit-all ({args.jobs} jobs, {args.clients} clients): default flags, "
        "anypod serve (W=1 c=1) vs Celery baseline (c=2, 1 API process)\n"
    )
    head = ["row", "jobs/s", "submit/s", "GETs/job", "wall s", "failed", "CPU ms/job", "others"]
    print(report.table(head, cells))
    print("\n(jobs/s: first submit .. last COMPLETED seen; submit/s: phase 1 alone; CPU ms/job:")
    print(" every process of the row and the client; others: cores used by other processes)")
    if celery not in rows:
        return lines
    base = rows[celery]["jobs_s"].median
    cells = []
    for n in (n for n in anypod if n in rows):
        f, target = rows[n], TARGETS[n.split()[1]]
        r = f["jobs_s"].median / base
        cpu_r = total_cpu(f) / total_cpu(rows[celery])
        ok = report.pass_fail(r >= target)
        cells.append([n, f"{f['jobs_s'].median:.0f}", f"{r:.2f}x", f">= {target:g}x", ok])
        cells[-1].append(f"{cpu_r:.2f}x")
        lines.append(
            f"{n} vs {celery}: jobs/s {f['jobs_s'].median:.0f} / {base:.0f} = {r:.2f}x "
            f"(target >= {target:g}x) {ok}"
        )
    print(f"\n### anypod / Celery, submit-all ({celery} = {base:.0f} jobs/s)\n")
    head = ["anypod row", "jobs/s", "ratio", "target", "verdict", "CPU ms/job ratio"]
    print(report.table(head, cells))
    print()
    print("\n".join(lines))
    return lines


def show_cpu(rows: Rows) -> None:
    roles = list(dict.fromkeys(k for f in rows.values() for k in f if k.startswith("cpu ")))
    cells = [
        [n, *(f"{f[k].median:.2f}" if k in f else "-" for k in roles), f"{total_cpu(f):.2f}"]
        for n, f in rows.items()
    ]
    print("\n### submit-all: CPU ms per job, by process (median)\n")
    print(report.table(["row", *(r[4:] for r in roles), "total"], cells))


def secondary(rows: Rows, args: argparse.Namespace) -> list[str]:
    """The closed-loop rows (not the issue's measurement), their ratios and the ceiling."""
    poll_ms: float = args.poll_ms
    ceiling = args.clients / (poll_ms / 1000)
    print(
        f"\n### Secondary: closed-loop clients (sleep {poll_ms:g} ms before each status GET, or "
        f"long-poll status-sync); {args.clients} polling clients cap ANY server at "
        f"{args.clients} / {poll_ms:g} ms = {ceiling:.0f} jobs/s"
    )
    scaleout.show(rows, args.rounds)
    celery = row_name("celery", CELERY_DEFAULT, "poll", poll_ms)
    if celery not in rows:
        return []
    base = rows[celery]["jobs_s"].median
    cells, lines = [], []
    for n in (n for n in rows if n.startswith("anypod") and " W=1 " in n):
        f = rows[n]
        r = f["jobs_s"].median / base
        p50 = f["p50_ms"].median / rows[celery]["p50_ms"].median
        p99 = f["p99_ms"].median / rows[celery]["p99_ms"].median
        cells.append([n, f"{r:.2f}x", f"{p50:.2f}x", f"{p99:.2f}x"])
        lines.append(f"(closed loop) {n} vs {celery}: jobs/s {r:.2f}x, p50 {p50:.2f}x")
    print(f"\n### Secondary: anypod / Celery, closed loop ({celery} = {base:.0f} jobs/s)\n")
    print(report.table(["anypod row", "jobs/s", "p50", "p99"], cells))
    cap = ceiling / base
    print(
        f"\nceiling of polling clients: {ceiling:.0f} jobs/s = {cap:.2f}x Celery's {base:.0f}; a "
        f"'poll' row cannot show a ratio above that, whatever the server "
        f"({', '.join(f'{s} {t:g}x' for s, t in TARGETS.items() if t > cap) or 'no target'} "
        "out of reach)"
    )
    return lines


Series = dict[str, dict[int, stats.Spread]]  # "anypod sqlite" -> workers -> jobs/s


def series(rows: Rows, args: argparse.Namespace) -> Series:
    """Submit-all jobs/s by setup and worker count."""
    out: Series = {}
    for setup in args.setups:
        name = "Celery baseline" if setup == "celery" else f"anypod {setup}"
        for n in args.workers:
            row = row_name(setup, n, SUBMIT_ALL, 0)
            if row in rows:
                out.setdefault(name, {})[n] = rows[row]["jobs_s"]
    return out


def show_sweep(found: Series, args: argparse.Namespace) -> None:
    cells = [
        [name, *(by[n].show(".0f", args.rounds > 1) if n in by else "-" for n in args.workers)]
        for name, by in found.items()
    ]
    print("\n### submit-all jobs/s against worker count (anypod --workers, default --concurrency "
          "1; Celery --concurrency)\n")  # fmt: skip
    print(report.table(["series", *(f"{n}" for n in args.workers)], cells))


def plot(rows: Rows, path: Path, args: argparse.Namespace) -> None:
    found = series(rows, args)
    title = (
        f"no-op job, default flags but the worker count; submit-all: {args.clients} clients "
        f"submit {args.jobs} jobs, then poll until all are done; {os.cpu_count()} cores shared "
        f"by everything; median of {args.rounds} round(s)"
    )
    style = {"celery": ("#9e9e9e", "o"), "sqlite": ("#1f77b4", "s"), "pg": ("#ff7f0e", "^")}
    with report.figure(path, 2, title, (13, 5)) as (ax1, ax2):
        for name, by in found.items():
            setup = "celery" if name.startswith("Celery") else name.split()[1]
            color, marker = style[setup]
            xs = sorted(by)
            label = name if setup == "celery" else f"{name} (anypod serve)"
            ax1.errorbar(
                xs,
                [by[x].median for x in xs],
                yerr=[[by[x].median - by[x].lo for x in xs], [by[x].hi - by[x].median for x in xs]],
                capsize=3,
                label=label,
                color=color,
                marker=marker,
            )
            cpu_ms = [total_cpu(rows[row_name(setup, x, SUBMIT_ALL, 0)]) for x in xs]
            ax2.plot(xs, cpu_ms, label=label, color=color, marker=marker)
        celery = row_name("celery", CELERY_DEFAULT, SUBMIT_ALL, 0)
        if celery in rows:
            base = rows[celery]["jobs_s"].median
            for setup, times in TARGETS.items():
                if setup in args.setups:
                    ax1.axhline(base * times, color=style[setup][0], linewidth=0.8, ls=":")
                    ax1.annotate(
                        f"{times:g}x Celery c={CELERY_DEFAULT} ({setup} target)",
                        (min(args.workers), base * times),
                        textcoords="offset points",
                        xytext=(2, 3),
                        fontsize=8,
                        color=style[setup][0],
                    )
        ax1.set(
            title="throughput (submit-all)",
            xlabel="workers (anypod --workers) / Celery --concurrency",
            ylabel="jobs/s (higher is better; whiskers = range)",
        )
        ax2.set(
            title="CPU per job, all processes (incl. the client)",
            xlabel="workers (anypod --workers) / Celery --concurrency",
            ylabel="CPU ms per job (lower is better)",
        )
        ax1.margins(y=0.25)
        for ax in (ax1, ax2):
            ax.set_xticks(args.workers)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8, loc="best")


async def main(reg: procs.Registry, args: argparse.Namespace) -> int:
    if "celery" in args.setups and not scaleout.CELERY_PY.exists():
        raise SystemExit(f"{scaleout.CELERY_PY} missing: see {scaleout.CELERY_DIR}/README.md")
    source = sut.Anypod(args.src).identity()
    info = await pg.settings(args.pg, "server_version", "synchronous_commit")
    print(report.header(source, **info))
    start = report.loadavg()
    print(
        f"submit-all: {args.jobs} jobs after {args.warmup} warm-up, {args.clients} clients, "
        f"pause {args.pause_ms:g} ms after an idle pass; closed loop ({args.closed_loop}): poll "
        f"every {args.poll_ms:g} ms, anypod waits {args.waits}; {args.rounds} round(s); sweep "
        f"{args.workers}; /proc/loadavg {start}"
    )
    drained: list[list[Drained]] = []
    rounds: list[list[Phase]] = []
    loads: list[dict[str, str]] = []
    for _ in range(args.rounds):
        drained.append([])
        rounds.append([])
        loads.append({})
        for setup, n in plan(args):
            loads[-1][f"{setup} {n}"] = report.loadavg()
            phase, phases = await server_rows(reg, args, setup, n)
            drained[-1].append(phase)
            rounds[-1] += phases
    rows = stats.by_row((p.row, drained_figures(p)) for r in drained for p in r)
    closed = stats.by_row(
        (p.row, {**scaleout.figures(p), "others_cores": p.others_cores}) for r in rounds for p in r
    )
    show_cpu(rows)
    if args.workers:
        show_sweep(series(rows, args), args)
    closed_lines = secondary(closed, args) if closed else []
    lines = headline(rows, args)
    end = report.loadavg()
    print(f"\n/proc/loadavg at the start: {start}; at the start of each server: {loads}")
    print(f"/proc/loadavg at the end: {end}")
    print("\n" + reg.shutdown_report())
    if args.plot:
        plot(rows, args.plot, args)
    if args.json:
        report.write_json(
            args.json,
            args,
            source,
            postgres=info,
            submit_all=drained,
            rows=rows,
            closed_loop=rounds,
            closed_loop_rows=closed,
            verdicts=lines,
            closed_loop_lines=closed_lines,
            loadavg={"start": start, "servers": loads, "end": end},
            shutdown=reg.stopped,
        )
    return 0


def replot(path: Path, out: Path) -> None:
    doc = json.loads(path.read_text())
    rows = {n: {k: stats.Spread(**v) for k, v in f.items()} for n, f in doc["rows"].items()}
    plot(rows, out, argparse.Namespace(**doc["args"]))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--warmup", type=int, default=300, help="jobs run before each measured phase")
    p.add_argument("--clients", type=int, default=32)
    idle = "submit-all: pause after a full pass over the outstanding jobs saw none end"
    p.add_argument("--pause-ms", type=float, default=1000 * load.IDLE_PAUSE, help=idle)
    closed = "secondary closed-loop rows: on the default-flag servers, on all, none"
    p.add_argument("--closed-loop", choices=CLOSED_LOOP, default="default", help=closed)
    p.add_argument("--poll-ms", type=float, default=50.0, help="closed loop: sleep before a GET")
    p.add_argument("--waits", default="poll,status-sync", help="closed loop: poll, status-sync")
    sweep = "sweep: anypod --workers, celery -c (none: the default-flag rows only)"
    p.add_argument("--workers", default="1,2,4", help=sweep)
    p.add_argument("--setups", default="celery,sqlite,pg", help="rows: celery, sqlite, pg")
    p.add_argument("--rounds", type=int, default=1, help="repeat every row; medians reported")
    p.add_argument("--celery-redis-db", type=int, default=9, help="broker db (FLUSHDB'd)")
    p.add_argument("--server-grace", type=float, default=8.0, help="seconds before SIGKILL")
    p.add_argument("--pg", default=pg.ADMIN_URL, help="admin URL; each row gets a fresh database")
    p.add_argument("--quick", action="store_true", help="800 jobs after 100, sweep 1,2")
    p.add_argument("--json", type=Path, help="every phase, the medians and the verdicts")
    p.add_argument("--plot", type=Path, help="a PNG (e.g. docs/img/defaults_workers.png)")
    p.add_argument("--replot", type=Path, metavar="JSON", help="only redraw --plot from --json")
    p.add_argument("--src", type=Path, help=sut.SRC_HELP)
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.warmup = 800, 100
        if args.workers == p.get_default("workers"):
            args.workers = "1,2"
    args.workers = sorted(
        {int(n) for n in args.workers.split(",") if n.strip() not in ("", "none")}
    )
    args.waits = [w.strip() for w in args.waits.split(",") if w.strip()]
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if bad := [w for w in args.waits if w not in WAITS] + [
        s for s in args.setups if s not in SETUPS
    ]:
        p.error(f"unknown waits or setups {bad}")
    return args


if __name__ == "__main__":
    options = parse()
    if options.replot:
        replot(options.replot, options.plot or Path("docs/img/defaults_workers.png"))
        sys.exit(0)
    sys.exit(procs.run_main(lambda reg: main(reg, options), options.keep_logs))
