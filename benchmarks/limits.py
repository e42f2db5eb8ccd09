"""What a key's limits cost on the hot path: one ``anypod serve`` (noop handler, one worker, a
fresh SQLite file), two managed keys made with ``anypod keys create``, the same load with each,
in alternating rounds:

* ``key, no limits``: ``--name plain``;
* ``key, every limit``: ``--rate 1000000/s --concurrency 1000000 --quota
  jobs=1000000000/month,gpu_seconds=1000000000/month`` (never reached: the checks run, none
  refuses);

and, for the cost of managed keys themselves, ``open`` (a second server on a database with no
key: development mode). Prints jobs/s and the server's CPU ms per job, median of rounds, and
the ratio limited / plain. Target (issue 9): the limits cost a few percent of the server's CPU.

    python -m benchmarks.limits                 # 3 rounds of 3,000 jobs (~2 min)
    python -m benchmarks.limits --rounds 1 --jobs 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from benchmarks.harness import cpu, load, procs, report, sut

LIMITED = [
    "--rate",
    "1000000/s",
    "--concurrency",
    "1000000",
    "--quota",
    "jobs=1000000000/month,gpu_seconds=1000000000/month",
]


def make_key(cli: sut.Anypod, dsn: str, name: str, *extra: str) -> str:
    out = cli.run("keys", "create", "--name", name, "--json", "--database", dsn, *extra)
    return str(json.loads(out)["key"])


async def measure(
    url: str, roles: cpu.Roles, key: str | None, args: argparse.Namespace
) -> tuple[float, float]:
    """(jobs/s, server CPU ms per job) of one closed-loop phase."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with load.session(args.clients + 8, headers=headers) as session:
        target = load.anypod_target(url, sut.ENDPOINT, None)
        with cpu.Meter(lambda: roles) as meter:
            out = await load.submit_phase(session, [target], args.jobs, args.clients)
    per = meter.usage.ms_per_job(out.completed)
    return out.jobs_s, per["server"]


async def main(reg: procs.Registry, args: argparse.Namespace) -> int:
    cli = sut.Anypod(args.src)
    keyed_db = f"sqlite:///{reg.dir / 'keyed.db'}"
    open_db = f"sqlite:///{reg.dir / 'open.db'}"
    keys = {
        "key, no limits": make_key(cli, keyed_db, "plain"),
        "key, every limit": make_key(cli, keyed_db, "limited", *LIMITED),
    }
    servers = {}
    for dsn in (keyed_db, open_db):
        proc, url = await cli.serve(reg, sut.HANDLER, "--database", dsn, workers=1)
        servers[dsn] = (url, sut.roles(proc.pid))
    setups = [(name, keyed_db, key) for name, key in keys.items()] + [("open", open_db, None)]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in setups}
    for n in range(args.rounds):
        print(f"round {n + 1} ({report.load_avg()})", flush=True)
        for name, dsn, key in setups:
            url, roles = servers[dsn]
            results[name].append(await measure(url, roles, key, args))
            jobs_s, ms = results[name][-1]
            print(f"  {name:18} {jobs_s:7.0f} jobs/s  server {ms:.3f} ms/job", flush=True)
    rows, medians = [], {}
    for name, runs in results.items():
        medians[name] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
        rows.append([name, f"{medians[name][0]:.0f}", f"{medians[name][1]:.3f}"])
    print()
    print(report.table(["setup", "jobs/s", "server CPU ms/job"], rows, right=2))
    plain, limited = medians["key, no limits"][1], medians["key, every limit"][1]
    print(f"\nlimits on / off, server CPU per job: {limited / plain:.3f}x", flush=True)
    print(f"managed key / open, server CPU per job: {plain / medians['open'][1]:.3f}x")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--src", default=None, help=sut.SRC_HELP)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    sys.exit(procs.run_main(lambda reg: main(reg, arguments)))
