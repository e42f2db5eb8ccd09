"""What a request may cost the server in memory (issue 9), measured on a real ``anypod serve``:
the worst shapes of body a client or worker can send, one at a time and five at once, must
each get a 4xx JSON error (or succeed) while the server's peak RSS stays within a small bound.

Before the limits on JSON values, one 10 MB body of ``{}`` took 190-240 MB in flight, five at
once 1.2 GB, and a 200k-item ``job-done-batch`` took the server to 1.4-1.8 GB."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Served

MB = 1024 * 1024
# Peak RSS over the idle server's, for everything below. Measured: 50-75 MB (the bodies
# themselves, five 10 MB ones read at once, and a decoded body at the value limit, ~25 MB).
BOUND_MB = 150
BODY = 10 * MB - 64  # just under the /run limit
VALUES = 262_144  # Limits.json_values


def peak_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def worker_token(database: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "anypod", "worker-env", "--endpoint", "ep", "--database", database],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return env["RUNPOD_AI_API_KEY"].strip("'\"")


def run_body(inner: bytes) -> bytes:
    return b'{"input": {"a": ' + inner + b"}}"


def worst_shapes() -> dict[str, tuple[str, bytes]]:
    """name -> (route, body): what costs most once decoded, at the size limits."""
    batch = b",".join(b'{"id":"job-%06d","result":{"output":"ok"}}' % i for i in range(200_000))
    return {
        "10 MB of {}": ("run", run_body(b"[" + b"{}," * (BODY // 3 - 12) + b"{}]")),
        "10 MB of small ints": ("run", run_body(b"[" + b"1," * (BODY // 2 - 12) + b"1]")),
        "1,000 levels deep": ("run", run_body(b"[" * 1000 + b"]" * 1000)),
        "200k-item job-done-batch": ("batch", b"[" + batch + b"]"),
        "10 MB string": ("run", run_body(b'"' + b"x" * (BODY - 24) + b'"')),
        # accepted: as many values (and keys) as the limit lets through, in the costliest shapes
        "values at the limit: {}": (
            "run",
            run_body(b"[" + b",".join([b"{}"] * (VALUES // 2 - 8)) + b"]"),
        ),
        "values at the limit: keys": (
            "run",
            b'{"input": {'
            + b",".join(b'"k%07d":"v%07d"' % (i, i) for i in range(VALUES // 2 - 8))
            + b"}}",
        ),
    }


def send(server: str, token: str, route: str, body: bytes) -> httpx.Response:
    if route == "batch":
        url, headers = f"{server}/v2/ep/job-done-batch/w1", {"Authorization": token}
    else:
        url, headers = f"{server}/v2/ep/run", {}
    return httpx.post(url, content=body, headers=headers, timeout=120)


def check(name: str, reply: httpx.Response) -> None:
    assert reply.headers["content-type"] == "application/json", name
    if reply.status_code == 200:
        return
    assert reply.status_code in (400, 413), f"{name}: {reply.status_code} {reply.text[:300]}"
    body = reply.json()
    assert body["code"] in ("invalid_request", "payload_too_large") and body["field"], name


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_worst_bodies_stay_within_a_small_memory_bound(
    serve: Callable[..., Served], tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'anypod.db'}"
    if database == "postgresql":
        url = request.getfixturevalue("pg_url")
    served = serve(None, endpoint="ep", workers=0, extra=["--database", url])
    assert served.proc is not None
    token = worker_token(url)
    shapes = worst_shapes()
    # warm up every path a body takes (imports, pools), then measure from there
    check("warm", send(served.url, token, "run", run_body(b"[12345678901234567890, [[1]]]")))
    check("warm", send(served.url, token, "batch", b'[{"id": "x", "result": {}}]'))
    baseline = peak_mb(served.proc.pid)

    for name, (route, body) in shapes.items():
        check(name, send(served.url, token, route, body))
    at_once = [shapes[n] for n in ("10 MB of {}", "10 MB of small ints", "10 MB of {}")]
    at_once += [shapes["200k-item job-done-batch"], shapes["values at the limit: keys"]]
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda shape: send(served.url, token, *shape), at_once))
    for reply in replies:
        check("five at once", reply)

    grew = peak_mb(served.proc.pid) - baseline
    assert grew < BOUND_MB, f"peak RSS grew {grew:.0f} MB over the idle server's"
    assert httpx.get(f"{served.url}/health", timeout=5).status_code == 200
