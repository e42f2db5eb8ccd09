"""What the HTTP layer alone costs per request: the ASGI app called in process, the service's
store calls replaced by stubs that answer at once, so routing, the caller, validation,
rendering and the reply are all that is timed (no socket, no database, no worker).

    python -m benchmarks.http_layer                                  # this tree
    python -m benchmarks.http_layer --baseline-src /tmp/old/src      # and an older one

Each tree runs in a fresh interpreter with that tree on ``PYTHONPATH`` (``--rounds`` times,
alternating): per route, ``--requests`` calls after 2,000 warm-up ones, best of 3 repeats, in
microseconds of wall time per request on an idle loop. Ratio: baseline / this tree.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import report, trees

PROBE = r"""
import asyncio, inspect, json, sys, tempfile, time
import orjson
from anypod import jobs, store as stores
from anypod.endpoints import Endpoint
from anypod.service import JobService
from anypod import http as anyhttp

N = int(sys.argv[1])
JOB = jobs.Job(id="j1", endpoint="ep", status=jobs.JobStatus.COMPLETED, input=b'{"i":1}',
               output=b'{"ok":true}', created_at=1.0, expires_at=2.0, started_at=1.1,
               finished_at=1.2, worker_id="w", attempts=1)
BATCH = orjson.dumps([{"id": f"j{i}", "result": {"output": {"ok": True}}} for i in range(8)])

async def stubs(svc):
    async def one(*a, **k): return JOB
    async def take(endpoint, worker, limit, *a): return [JOB] * limit
    async def nothing(*a, **k): return None
    svc.get = svc.submit = svc.wait_terminal = one
    svc.take, svc.report, svc.authenticate_worker = take, nothing, nothing

async def main():
    store = stores.from_url(f"sqlite:///{tempfile.mkdtemp()}/b.db", migrate=True)
    await store.open()
    svc = JobService(store, {"ep": Endpoint(name="ep")})
    if "manage_store" in inspect.signature(anyhttp.create_app).parameters:  # before c2a6afc+
        from anypod.settings import Settings
        app = anyhttp.create_app(svc, Settings(), manage_store=False)
    else:
        app = anyhttp.create_app(svc)
    await stubs(svc)

    async def call(method, path, body=b"", qs=b""):
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": qs, "http_version": "1.1", "scheme": "http", "root_path": "",
                 "server": ("t", 80), "client": ("c", 1), "asgi": {"version": "3.0"},
                 "headers": [(b"content-type", b"application/json"), (b"authorization", b"t"),
                             (b"content-length", str(len(body)).encode())]}
        sent = False
        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}
        async def send(message): pass
        await app(scope, receive, send)

    routes = {
        "GET status": lambda: call("GET", "/v2/ep/status/j1"),
        "GET status-sync": lambda: call("GET", "/v2/ep/status-sync/j1", qs=b"wait=60000"),
        "POST run": lambda: call("POST", "/v2/ep/run", b'{"input": {"i": 1}}'),
        "GET job-take": lambda: call("GET", "/v2/ep/job-take/w", qs=b"gpu=cpu&job_in_progress=0"),
        "GET job-take-batch (8)": lambda: call(
            "GET", "/v2/ep/job-take-batch/w", qs=b"batch_size=8&job_in_progress=1"),
        "POST job-done": lambda: call(
            "POST", "/v2/ep/job-done/w/j1", b'{"output": {"ok": true}}', b"isStream=false"),
        "POST job-done-batch (8)": lambda: call("POST", "/v2/ep/job-done-batch/w", BATCH),
    }
    out = {}
    for name, fn in routes.items():
        for _ in range(2000):
            await fn()
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(N):
                await fn()
            best = min(best, (time.perf_counter() - began) / N * 1e6)
        out[name] = best
    await store.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="an older tree's src/ to compare with")
    args = parser.parse_args()
    found = trees.trees(args.baseline_src)
    runs = trees.alternate(found, args.rounds, PROBE, [str(args.requests)])
    print(report.header(report.source_identity(found["this tree"]), rounds=args.rounds))
    medians = trees.medians(runs)
    head = ["route", *(f"{name} µs" for name in found)]
    if "baseline" in found:
        head.append("baseline / this tree")
    rows = []
    for route in medians["this tree"]:
        row = [route, *(f"{medians[name][route]:.1f}" for name in found)]
        if "baseline" in found:
            row.append(f"{medians['baseline'][route] / medians['this tree'][route]:.2f}x")
        rows.append(row)
    print(report.table(head, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
