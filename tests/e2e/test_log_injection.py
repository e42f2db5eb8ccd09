"""What requests can put in a real server's log (issue 9): no raw control characters, so no
forged lines, and no secrets: neither the API key, nor a worker token, nor a wrong credential
a client tried. Every line of the log is a record in the one format (or an indented traceback
line), so a line that looks like a record is one; and a flood of bad requests is not a flood of
lines."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import quote

import httpx

from tests.conftest import Served

FORGED = "2026-01-01 00:00:00,000 CRITICAL anypod [-]: forged"
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ \[\S+\]: ")


def worker_token(database: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "anypod", "worker-env", "--endpoint", "ep", "--database", database],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return env["RUNPOD_AI_API_KEY"].strip("'\"")


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def hostile_requests(served: Served, key: str, token: str, wrong: str) -> None:
    forged = quote(f"\n{FORGED}\x1b[31m\r", safe="")
    client = {"Authorization": f"Bearer {key}"}
    worker = {"Authorization": token}
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for headers in (client, {"Authorization": f"Bearer {wrong}"}, {"Authorization": token}):
            http.get(f"/v2/ep/status/x{forged}", headers=headers)
        http.get(f"/v2/ep/status/x?api_key={key}")  # a key in the URL: refused, never logged
        for path in (f"job-take/w{forged}", f"ping/w{forged}", f"job-stop/w{forged}"):
            for headers in (worker, {"Authorization": wrong}, client):
                http.get(f"/v2/ep/{path}", headers=headers)
        job = http.post("/v2/ep/run", json={"input": {}}, headers=client).json()["id"]
        assert http.get("/v2/ep/job-take/w1", headers=worker).json()["id"] == job
        error = {"error": f"boom\n{FORGED}\x1b[2J\x00"}
        http.post(f"/v2/ep/job-done/w{forged}/{job}", json=error, headers=worker)
        http.post(f"/v2/ep/job-done/w1/{job}", json=error, headers=worker)
        http.post(f"/v2/ep/job-done/w1/{job}", json=error, headers=worker)  # late: logged
        assert http.get(f"/v2/ep/status/{job}", headers=client).json()["status"] == "FAILED"
    raw(served.port, f"GET /health HTTP/1.1\r\nX-Request-Id: a\x1b[2J{key}\r\n\r\n".encode())
    for _ in range(50):  # a flood of what cannot be parsed: a line now and then, not 50
        raw(served.port, b"GET /\x1b[2J\n" + FORGED.encode() + b" HTTP/1.1\r\n\r\n")


def test_requests_cannot_forge_log_lines_or_leak_secrets(serve: Callable[..., Served]) -> None:
    key, wrong = f"sk-{secrets.token_hex(16)}", f"sk-{secrets.token_hex(16)}"
    served = serve(None, endpoint="ep", workers=0, env={"ANYPOD_API_KEYS": key})
    token = worker_token(served.args[served.args.index("--database") + 1])
    hostile_requests(served, key, token, wrong)
    served.stop()
    log = served.log_path.read_text(errors="replace")
    found = log.splitlines()
    assert not [ln for ln in found if ln.lstrip().startswith(FORGED)], log
    assert "\x1b" not in log and "\x00" not in log and "\r" not in log, log
    strays = [ln for ln in found if not (RECORD.match(ln) or ln.startswith("    "))]
    assert strays == [ln for ln in found if ln.startswith("anypod listening on")], log
    assert "dropped a late" in log  # the late report was logged, the ids in it escaped
    assert len([ln for ln in found if "could not be parsed" in ln]) == 1, log
    for secret in (key, wrong, token, token.split("_", 1)[-1]):
        assert secret not in log, f"{secret!r} is in the log:\n{log}"
