"""What a key's limits cost on the hot path, two ways.

In process (``--in-process``, the steadier figure on a shared 2-core box): the real app and a
real SQLite store in one interpreter, no socket and no worker; one "job" is ``POST /run`` with
the key, the job ended in the store, ``GET /status`` with the key. Best-of-3 CPU microseconds
per job for: no key (development mode), a key without limits, a key with every limit (below).

End to end (the default): one ``anypod serve`` (noop handler, one worker, a
fresh SQLite file), two managed keys made with ``anypod keys create``, the same load with each,
in alternating rounds:

* ``key, no limits``: ``--name plain``;
* ``key, every limit``: ``--rate 1000000/s --concurrency 1000000 --quota
  jobs=1000000000/month,gpu_seconds=1000000000/month`` (never reached: the checks run, none
  refuses);

and, for the cost of managed keys themselves, ``open`` (a second server on a database with no
key: development mode). Prints jobs/s and the server's CPU ms per job, median of rounds, and
the ratios limited / plain and plain / open of each round (the rounds run side by side, so a
round's ratio is less noisy than a ratio of medians). Target (issue 9): the limits cost a few
percent of the server's CPU.

    python -m benchmarks.limits                 # 3 rounds of 3,000 jobs (~2 min)
    python -m benchmarks.limits --rounds 1 --jobs 1000
    python -m benchmarks.limits --in-process    # ~30 s
"""

from __future__ import annotations

import argparse
import asyncio
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


async def in_process(args: argparse.Namespace) -> int:
    """CPU per job through the app in process, three setups alternating, best of rounds."""
    import tempfile
    import time

    from anypod import access, jobs
    from anypod import store as stores
    from anypod.endpoints import Endpoint
    from anypod.http import create_app
    from anypod.service import JobService

    spec = dict(zip(LIMITED[::2], LIMITED[1::2], strict=True))
    setups: dict[str, tuple[object, str | None]] = {}
    for name in ("open", "key, no limits", "key, every limit"):
        db = f"sqlite:///{tempfile.mkdtemp()}/limits.db"
        store = stores.from_url(db, migrate=True)
        await store.open()
        credentials = access.Credentials(store, cache_seconds=60.0)  # as anypod serve has it
        svc = JobService(store, {"ep": Endpoint(name="ep")}, credentials=credentials)
        secret = None
        if name != "open":
            limits = {} if name == "key, no limits" else spec
            new = await svc.credentials.create_key(
                access.KeySpec.parse(
                    name="k",
                    rate=limits.get("--rate"),
                    concurrency=int(limits["--concurrency"]) if limits else None,
                    quota=limits.get("--quota"),
                )
            )
            secret = new.secret
        setups[name] = (create_app(svc), secret)

    async def job(app: object, secret: str | None, i: int) -> None:
        headers = [(b"content-type", b"application/json")]
        if secret:
            headers.append((b"authorization", f"Bearer {secret}".encode()))
        replies: list[bytes] = []
        await _call(app, "POST", "/v2/ep/run", headers, b'{"input": {"i": 1}}', replies)
        job_id = json.loads(replies[-1])["id"]
        svc_store = app.service.store  # type: ignore[attr-defined]
        await svc_store.end(job_id, jobs.cancel(time.time()))
        await _call(app, "GET", f"/v2/ep/status/{job_id}", headers, b"", replies)

    best: dict[str, float] = {name: float("inf") for name in setups}
    for n in range(args.rounds * 2):
        for name, (app, secret) in setups.items():
            began = time.process_time()
            for i in range(args.jobs // 3):
                await job(app, secret, i)
            if n:  # the first round warms up
                best[name] = min(best[name], (time.process_time() - began) / (args.jobs // 3))
    rows = [[name, f"{us * 1e6:.0f}"] for name, us in best.items()]
    print(report.table(["setup (in process)", "CPU µs per job"], rows, right=1))
    print(f"\nlimits on / off: {best['key, every limit'] / best['key, no limits']:.3f}x")
    print(f"managed key / open: {best['key, no limits'] / best['open']:.3f}x")
    return 0


async def _call(
    app: object,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    replies: list[bytes],
) -> None:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "server": ("t", 80),
        "client": ("c", 1),
        "asgi": {"version": "3.0"},
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        body = message.get("body")
        if message["type"] == "http.response.body" and isinstance(body, bytes):
            replies.append(body)

    await app(scope, receive, send)  # type: ignore[operator]


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
    print()
    for label, top, bottom in (
        ("limits on / off", "key, every limit", "key, no limits"),
        ("managed key / open", "key, no limits", "open"),
    ):
        ratios = [a[1] / b[1] for a, b in zip(results[top], results[bottom], strict=True)]
        each = ", ".join(f"{r:.3f}" for r in ratios)
        print(
            f"{label}, server CPU per job: {statistics.median(ratios):.3f}x"
            f" (median of rounds: {each})",
            flush=True,
        )
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--src", default=None, help=sut.SRC_HELP)
    p.add_argument("--in-process", action="store_true", help="the app in process (steadier)")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.in_process:
        sys.exit(asyncio.run(in_process(arguments)))
    sys.exit(procs.run_main(lambda reg: main(reg, arguments)))
