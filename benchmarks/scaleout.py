"""Scale-out on PostgreSQL vs the Celery baseline: the same no-op job, the same load generator.

    python -m benchmarks.scaleout                     # 3000 jobs, 32 clients, every row
    python -m benchmarks.scaleout --quick             # 600 jobs, fewer rows (~1 min)
    python -m benchmarks.scaleout --rounds 3 --also-poll --json o.json --plot docs/img/scaleout.png
    python -m benchmarks.scaleout --replot out.json --plot docs/img/scaleout.png

Rows, each on a fresh database: ``celery c=K poll P ms``: ``benchmarks/baselines/celery_stack``
(``run.py --celery-concurrency K --api-workers 1`` from its own venv; Redis db
``--celery-redis-db``), clients ``POST /jobs`` then ``GET /jobs/{id}`` every P ms. ``anypod pg N
API``: N ``anypod server`` replicas on one database and one ``anypod worker --concurrency K``
given every ``--server``; client i talks to replica i % N. ``anypod sqlite (serve)``: ``anypod
serve --workers 1 --concurrency K``. anypod clients ``POST /run`` then long-poll ``status-sync``
(``--also-poll``: also rows polling ``/status`` every 50 ms, as Celery's clients do). One load
generator for all (``benchmarks.harness.load``, with the Celery baseline's loadgen semantics and
payload, nearest-rank percentiles): ``--warmup`` jobs, then ``--jobs`` measured (55 s at most).
CPU ms per job per process (API, worker / Celery main and children, Redis, the row's PostgreSQL
backends, the client) from /proc. Ratios anypod / Celery against the Celery default (c=2, poll
50 ms) and the best Celery row; targets >= 2x jobs/s, <= 0.5x p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import cpu, load, pg, procs, report, stats, sut

CELERY_DIR = procs.ROOT / "benchmarks" / "baselines" / "celery_stack"
CELERY_PY = CELERY_DIR / ".venv" / "bin" / "python"
TARGET_SPEEDUP, TARGET_LATENCY = 2.0, 0.5
Roles = Callable[[], cpu.Roles]
LABEL = {"jobs_s": "jobs/s", "p50_ms": "p50", "p99_ms": "p99"}


def payload(i: int) -> bytes:  # the Celery baseline's own default payload
    body = {"input": {"i": i, "audio_url": f"https://example.invalid/audio/{i}.wav"}}
    return json.dumps(body).encode()


@dataclass
class Phase:
    row: str
    outcome: load.Outcome
    cpu_ms_per_job: dict[str, float]
    others_cores: float


async def drive(targets: list[load.Target], jobs: int, args: argparse.Namespace) -> load.Outcome:
    async with load.session(args.clients + 4, timeout=90) as s:
        return await load.submit_phase(s, targets, jobs, args.clients, payload, method="nearest")


async def measure(
    name: str, targets: list[load.Target], roles: Roles, args: argparse.Namespace
) -> Phase:
    await drive(targets, args.warmup, args)
    with cpu.Meter(roles) as meter:
        out = await drive(targets, args.jobs, args)
    print(f"  {name}: {out.describe()}\n    CPU ms/job: {meter.usage.line(out.completed)}")
    ms = {k: v for k, v in meter.usage.ms_per_job(out.completed).items() if v > 0}
    return Phase(name, out, ms, meter.usage.cores(meter.usage.others))


async def celery_rows(reg: procs.Registry, args: argparse.Namespace, conc: int) -> list[Phase]:
    name, port = f"celery c={conc}", procs.free_port()
    argv = [str(CELERY_PY), str(CELERY_DIR / "run.py"), "--port", str(port)]
    argv += ["--celery-concurrency", str(conc), "--api-workers", "1"]
    print(f"\n== {name}: {' '.join(argv[1:])}  ({report.load_avg()})", flush=True)
    dbname = f"scaleout_celery_{os.getpid()}"
    broker = f"redis://127.0.0.1:6379/{args.celery_redis_db}"
    async with pg.fresh_database(args.pg, dbname) as dsn:
        env = {"CELERY_STACK_PG_DSN": dsn, "CELERY_STACK_BROKER_URL": broker}
        stack = reg.start(name, argv, env)

        def roles() -> cpu.Roles:
            # " -m celery ", not "celery": uvicorn's argv[0] is .../celery_stack/.venv/bin/python
            main = [p for p in procs.children(stack.pid) if " -m celery " in procs.cmdline(p)]
            return {
                "api": [
                    p for p in procs.descendants(stack.pid) if " -m uvicorn " in procs.cmdline(p)
                ],
                "celery main": main,
                "celery children": [p for m in main for p in procs.descendants(m)],
                "redis": procs.matching(lambda cmd: cmd.startswith("redis-server")),
                "postgres": pg.backends(dbname),
            }

        try:
            await procs.wait_log(stack, "stack up at", 90)  # after /health and one probe job
            phases = []
            for poll_ms in args.celery_poll_ms:
                target = load.celery_target(f"http://127.0.0.1:{port}", poll_ms / 1000)
                phases.append(await measure(f"{name} poll {poll_ms:g} ms", [target], roles, args))
        finally:
            logs = Path(stack.tail(1000).partition("(logs: ")[2].partition(")")[0] or "/-")
            reg.stop(stack, 40)
            reg.stopped[-1].log_errors.extend(procs.log_errors(logs / "celery.log"))
            if not reg.keep_logs and logs.name.startswith("celery_stack_"):  # run.py's log dir
                shutil.rmtree(logs, ignore_errors=True)
            code = f"import redis; redis.Redis.from_url({broker!r}).flushdb()"  # its venv has redis
            subprocess.run([str(CELERY_PY), "-c", code], timeout=20, capture_output=True)
    return phases


async def anypod_phases(
    label: str, urls: list[str], roles: Roles, args: argparse.Namespace
) -> list[Phase]:
    phases = []
    for poll in [None, 0.05] if args.also_poll else [None]:
        targets = [load.anypod_target(u, sut.ENDPOINT, poll) for u in urls]
        phases.append(await measure(label + (" poll 50 ms" if poll else ""), targets, roles, args))
    return phases


async def pg_rows(reg: procs.Registry, args: argparse.Namespace, replicas: int) -> list[Phase]:
    cli, label = sut.Anypod(args.src), f"anypod pg {replicas} API"
    print(f"\n== {label}  ({report.load_avg()}; {cli.identity()})", flush=True)
    dbname, apis = f"scaleout_anypod_{os.getpid()}_{replicas}", []
    async with pg.fresh_database(args.pg, dbname) as dsn:
        cli.run("migrate", "--database", dsn)
        urls = [f"http://127.0.0.1:{procs.free_port()}" for _ in range(replicas)]
        token = cli.worker_token(dsn, server=urls[0])
        for i, url in enumerate(urls, 1):
            argv = ["server", "--endpoint", sut.ENDPOINT, "--database", dsn]
            apis.append(cli.start(reg, f"{label} api{i}", *argv, "--port", url.rsplit(":", 1)[1]))
        argv = ["worker", sut.HANDLER, "--endpoint", sut.ENDPOINT, "--token", token]
        argv += [a for u in urls for a in ("--server", u)]
        worker = cli.start(
            reg, f"{label} worker", *argv, "--concurrency", str(args.anypod_concurrency)
        )
        try:
            for url, api in zip(urls, apis, strict=True):
                await procs.wait_health(api, f"{url}/health", lambda h: h.get("workers", 0) >= 1)

            def roles() -> cpu.Roles:
                tree = sut.roles(worker.pid, top="worker")
                tree["api"], tree["postgres"] = [p.pid for p in apis], pg.backends(dbname)
                return {k: tree[k] for k in ("api", "worker", "handler", "postgres")}

            return await anypod_phases(label, urls, roles, args)
        finally:
            for proc in [worker, *apis]:
                reg.stop(proc, 10 if proc is worker else args.server_grace)


async def sqlite_rows(reg: procs.Registry, args: argparse.Namespace) -> list[Phase]:
    cli, label = sut.Anypod(args.src), "anypod sqlite (serve)"
    print(f"\n== {label}  ({report.load_avg()}; {cli.identity()})", flush=True)
    served = await sut.embedded(cli, reg, f"1x{args.anypod_concurrency}")

    def roles() -> cpu.Roles:
        tree = sut.roles(served.proc.pid, top="api")
        return {k: tree[k] for k in ("api", "worker", "handler")}

    try:
        return await anypod_phases(label, [served.url], roles, args)
    finally:
        reg.stop(served.proc, args.server_grace)


Rows = dict[str, dict[str, stats.Spread]]  # row -> figure -> median (range) over rounds


def figures(ph: Phase) -> dict[str, float]:
    lat, out = ph.outcome.latency_ms, ph.outcome
    cpu_ms = {f"cpu {k}": v for k, v in ph.cpu_ms_per_job.items()}
    return {
        "jobs_s": out.jobs_s,
        "p50_ms": lat.p50,
        "p99_ms": lat.p99,
        "failed": out.failed,
        **cpu_ms,
    }


def show(rows: Rows, rounds: int) -> None:
    many, what = rounds > 1, f"median of {rounds} rounds (range)" if rounds > 1 else "one round"
    cells = [[n, *(f[k].show(fmt, many) for k, fmt in (("jobs_s", ".0f"), ("p50_ms", ".1f"),
              ("p99_ms", ".1f"))), f"{f['failed'].hi:.0f}"] for n, f in rows.items()]  # fmt: skip
    print(f"\n### Results ({what}; latency = POST .. terminal status seen by the client)\n")
    print(report.table(["row", "jobs/s", "p50 ms", "p99 ms", "failed (max)"], cells))
    roles = list(dict.fromkeys(k for f in rows.values() for k in f if k.startswith("cpu ")))
    per_role = {
        n: [f"{f[k].median:.2f}" if k in f else "-" for k in roles] for n, f in rows.items()
    }
    total = {n: sum(f[k].median for k in roles if k in f) for n, f in rows.items()}
    cells = [[n, *vals, f"{total[n]:.2f}"] for n, vals in per_role.items()]
    print("\n### CPU ms per job, by process (median)\n")
    print(report.table(["row", *(r[4:] for r in roles), "total"], cells))


def ratios(rows: Rows) -> list[str]:
    """anypod / Celery, against the Celery default row and the best Celery row per figure."""
    celery = {name: f for name, f in rows.items() if name.startswith("celery")}
    if not celery or len(celery) == len(rows):
        return []
    default = next((n for n in celery if "c=2 poll 50 ms" in n), next(iter(celery)))
    best = {
        k: pick(celery, key=lambda n: celery[n][k].median)
        for k, pick in (("jobs_s", max), ("p50_ms", min), ("p99_ms", min))
    }
    cells, lines, v = [], [], report.verdict
    for name, f in ((n, f) for n, f in rows.items() if n not in celery):
        for ref, refs in ((default, dict.fromkeys(best, default)), ("best Celery row each", best)):
            r = {k: f[k].median / rows[refs[k]][k].median for k in best}
            ok = {k: r[k] >= TARGET_SPEEDUP if k == "jobs_s" else r[k] <= TARGET_LATENCY for k in r}
            shown = [f"{r[k]:.2f}x" if k == "jobs_s" else f"{r[k]:.3f}x" for k in r]
            cells.append([name, ref, *shown, v(all(ok.values()))])
            said = (f"{LABEL[k]} {r[k]:.3f}x {v(ok[k])}" for k in r)
            lines.append(f"{name} vs {ref}: " + ", ".join(said))
    targets = f"jobs/s >= {TARGET_SPEEDUP:g}x, p50 and p99 <= {TARGET_LATENCY:g}x"
    print(f"\n### anypod / Celery (targets: {targets})\n")
    print(report.table(["anypod row", "vs", "jobs/s", "p50", "p99", "targets"], cells, right=2))
    print("\n(best Celery rows: " + "; ".join(f"{LABEL[k]} {n}" for k, n in best.items()) + ")\n")
    print("\n".join(lines))
    return lines


def plot(rows: Rows, path: Path, args: argparse.Namespace) -> None:
    title = (
        f"no-op job, {args.jobs} jobs, {args.clients} closed-loop clients, {os.cpu_count()} "
        f"cores; median of {args.rounds} round(s); grey = Celery baseline, blue = anypod"
    )
    names = [n.replace(" poll ", "\npoll ").replace(" (serve)", "\n(serve)") for n in rows]
    colors = ["#9e9e9e" if n.startswith("celery") else "#1f77b4" for n in rows]
    xs, figs = list(range(len(rows))), list(rows.values())
    with report.figure(path, 3, title, (17, 5.4)) as (ax1, ax2, ax3):
        jobs = [f["jobs_s"] for f in figs]
        err = [[s.median - s.lo for s in jobs], [s.hi - s.median for s in jobs]]
        bars = ax1.bar(xs, [s.median for s in jobs], color=colors, yerr=err, capsize=3)
        ax1.bar_label(bars, labels=[f"{s.median:.0f}" for s in jobs], padding=2, fontsize=8)
        ax1.set(title="throughput", ylabel="jobs/s (higher is better; whiskers = range)")
        for dx, key, hatch in ((-0.2, "p50_ms", ""), (0.2, "p99_ms", "//")):
            vals = [f[key].median for f in figs]
            b = ax2.bar([x + dx for x in xs], vals, 0.4, color=colors, hatch=hatch)
            ax2.bar_label(b, labels=[f"{v:.0f}" for v in vals], padding=2, fontsize=7)
        ax2.set(title="latency: p50, p99 (hatched)", yscale="log", ylabel="submit -> result, ms")
        ax2.yaxis.set_major_formatter("{x:g}")
        ax2.yaxis.set_minor_formatter("{x:g}")
        bottom = [0.0] * len(figs)
        for role in dict.fromkeys(k for f in figs for k in f if k.startswith("cpu ")):
            vals = [f[role].median if role in f else 0.0 for f in figs]
            ax3.bar(xs, vals, bottom=bottom, label=role[4:])
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax3.bar_label(ax3.containers[-1], labels=[f"{b:.1f}" for b in bottom], fontsize=8)
        ax3.set(title="CPU per job, by process", ylabel="CPU ms per job, all processes")
        ax3.legend(fontsize=7, ncol=2)
        for ax in (ax1, ax2, ax3):
            ax.set_xticks(xs, names, rotation=40, ha="right", fontsize=7.5)


async def main(reg: procs.Registry, args: argparse.Namespace) -> int:
    if args.celery_concurrency and not CELERY_PY.exists():
        raise SystemExit(f"{CELERY_PY} missing: see {CELERY_DIR}/README.md (python3 -m venv ...)")
    source = sut.Anypod(args.src).identity()
    info = await pg.settings(args.pg, "server_version", "synchronous_commit")
    print(report.header(source, **info))
    print(
        f"{args.jobs} jobs after {args.warmup} warm-up, {args.clients} clients, {args.rounds} "
        f"round(s); anypod concurrency {args.anypod_concurrency}; celery "
        f"{args.celery_concurrency}, poll {args.celery_poll_ms} ms"
    )
    rounds: list[list[Phase]] = []
    for _ in range(args.rounds):
        rounds.append([p for c in args.celery_concurrency for p in await celery_rows(reg, args, c)])
        for s in args.setups:
            rounds[-1] += await (
                sqlite_rows(reg, args) if s == "sqlite" else pg_rows(reg, args, int(s[2:]))
            )
    rows = stats.by_row((p.row, figures(p)) for r in rounds for p in r)
    show(rows, args.rounds)
    lines = ratios(rows)
    print("\n" + reg.shutdown_report())
    if args.plot:
        plot(rows, args.plot, args)
    if args.json:
        report.write_json(
            args.json,
            args,
            source,
            postgres=info,
            rounds=rounds,
            rows=rows,
            shutdown=reg.stopped,
            verdicts=lines,
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
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300, help="jobs run before each measured phase")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1, help="repeat every row; medians reported")
    p.add_argument("--setups", default="pg1,pg2,sqlite", help="anypod rows: pg1, pg2, sqlite")
    p.add_argument("--anypod-concurrency", type=int, default=8, help="anypod worker --concurrency")
    p.add_argument("--celery-concurrency", default="2,8", help="celery prefork sizes, a row each")
    p.add_argument("--celery-poll-ms", default="50,10", help="celery client poll intervals")
    p.add_argument("--celery-redis-db", type=int, default=9, help="broker db (FLUSHDB'd)")
    p.add_argument("--also-poll", action="store_true", help="anypod rows polled every 50 ms too")
    p.add_argument("--server-grace", type=float, default=8.0, help="seconds before SIGKILL")
    p.add_argument("--pg", default=pg.ADMIN_URL, help="admin URL; each row gets a fresh database")
    p.add_argument("--quick", action="store_true", help="600 jobs, celery c=2 poll 50 ms only")
    p.add_argument("--json", type=Path, help="every phase and the medians")
    p.add_argument("--plot", type=Path, help="a PNG (e.g. docs/img/scaleout.png)")
    p.add_argument("--replot", type=Path, metavar="JSON", help="only redraw --plot from --json")
    p.add_argument("--src", type=Path, help=sut.SRC_HELP)
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.jobs, args.warmup = 600, 100
        for key, quick in (("celery_concurrency", "2"), ("celery_poll_ms", "50")):
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, quick)
    args.celery_concurrency = [int(c) for c in args.celery_concurrency.split(",") if c.strip()]
    args.celery_poll_ms = [float(c) for c in args.celery_poll_ms.split(",") if c.strip()]
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if bad := [s for s in args.setups if s not in ("pg1", "pg2", "sqlite")]:
        p.error(f"unknown setups {bad}")
    return args


if __name__ == "__main__":
    options = parse()
    if options.replot:
        replot(options.replot, options.plot or Path("docs/img/scaleout.png"))
        sys.exit(0)
    sys.exit(procs.run_main(lambda reg: main(reg, options), options.keep_logs))
