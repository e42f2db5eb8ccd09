"""Where the time goes in the embedded mode: py-spy on the server, a worker parent and a handler
child while the throughput benchmark's load runs (``pip install py-spy``).

    python -m benchmarks.profile --out /tmp/prof                  # 1x8, 10 s per phase
    python -m benchmarks.profile --out /tmp/prof --config fake8 --gil

One setup as in ``benchmarks.throughput`` (``--config WxK`` or ``fakeK``); per phase, py-spy
records each role for ``--seconds`` (raw collapsed stacks in ``--out``) while either
``--clients`` closed-loop clients run jobs (``/run`` + ``status-sync``) or one client sends
``/runsync`` back to back. Printed: jobs done under the profiler, CPU ms per job per process,
and per role the self/inclusive shares of samples by function (``--gil``: only samples holding
the GIL, i.e. what serialises the process).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks.harness import cpu, load, procs, pyspy, report, stats, sut


async def phase(
    setup: sut.Embedded, name: str, args: argparse.Namespace, opts: pyspy.Options
) -> dict[str, object]:
    tag = f"{args.config}-{name}" + ("-gil" if opts.gil else "")
    print(f"\n-- {name}: py-spy for {opts.seconds:g} s at {opts.rate}/s -> {args.out}/{tag}-*")
    running = pyspy.record(setup.roles(), args.out, tag, opts)
    await asyncio.sleep(0.5)  # let py-spy attach
    base = f"{setup.url}/v2/{sut.ENDPOINT}"
    async with load.session(args.clients + 8) as session:
        with cpu.Meter(setup.roles) as meter:
            if name == "throughput":
                target = load.anypod_target(setup.url, sut.ENDPOINT)
                out = await load.submit_phase(
                    session, [target], None, args.clients, seconds=opts.seconds
                )
                jobs, figure = out.completed, f"{out.jobs_s:.0f} jobs/s"
            else:

                async def step(i: int) -> object:
                    return await load.runsync(session, f"{base}/runsync", load.job_body(i))

                ms = await load.sequential(1 << 30, step, limit=opts.seconds)
                jobs, figure = len(ms), f"runsync p50 {stats.summary(ms).p50:.2f} ms"
    print(f"  {figure} under the profiler; CPU ms/job: {meter.usage.line(jobs)}")
    profiles = await asyncio.to_thread(pyspy.finish, running, opts)
    for role, prof in profiles.items():
        pyspy.show(role, prof)
    return {"jobs": jobs, "cpu": meter.usage, "profiles": profiles}


async def main(reg: procs.Registry, args: argparse.Namespace) -> int:
    cli = sut.Anypod(args.src)
    print(report.header(cli.identity()))
    opts = pyspy.Options(args.seconds, args.rate, args.gil, args.native, args.blocking)
    setup = await sut.embedded(cli, reg, args.config)
    async with load.session(4) as session:  # warm up the path before sampling it
        for i in range(200):
            await load.runsync(session, f"{setup.url}/v2/{sut.ENDPOINT}/runsync", load.job_body(i))
    results = {name: await phase(setup, name, args, opts) for name in args.phases.split(",")}
    if args.json:
        report.write_json(args.json, args, cli.identity(), setup=setup.name, phases=results)
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the raw py-spy stacks")
    p.add_argument("--config", default="1x8", help="WxK or fakeK, as in benchmarks.throughput")
    p.add_argument("--phases", default="throughput,runsync")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0, help="per phase")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    p.add_argument("--native", action="store_true", help="C frames too (uvloop, sqlite3)")
    p.add_argument("--blocking", action="store_true", help="pause the process per sample")
    p.add_argument("--json", type=Path)
    p.add_argument("--src", type=Path, help=sut.SRC_HELP)
    p.add_argument("--keep-logs", action="store_true")
    return p.parse_args()


if __name__ == "__main__":
    options = parse()
    sys.exit(procs.run_main(lambda reg: main(reg, options), options.keep_logs))
