"""Another process holds the SQLite file's write lock: ``/run`` and ``/health`` answer 503 within
seconds (not after a 30 s wait), the log has no traceback per request, and all is well again once
the lock is released."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx

from tests.e2e.test_durability import wait_all

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


def test_a_lock_held_by_another_process_answers_503_within_seconds(
    serve: Any, tmp_path: Any
) -> None:
    s = serve("sleeps")
    database = str(tmp_path / "anypod.db")  # the file the serve fixture points the server at
    with httpx.Client(base_url=s.url, timeout=30) as c:
        before = c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"]
        with subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as locker:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            started = time.monotonic()
            refused = c.post("/v2/sleeps/run", json={"input": {}})
            assert refused.status_code == 503, refused.text
            assert time.monotonic() - started < 4
            started = time.monotonic()
            assert c.get("/health").status_code == 503
            assert time.monotonic() - started < 4
            assert locker.stdin is not None
            locker.stdin.write("\n")
            locker.stdin.flush()
        assert c.get("/health").status_code == 200
        after = c.post("/v2/sleeps/run", json={"input": {"seconds": 0}}).json()["id"]
    final = wait_all(s.url, "sleeps", [before, after], timeout=60)
    assert set(final.values()) == {"COMPLETED"}, final
    logs = s.logs()
    assert logs.count("WARNING anypod.store.base") == 1, logs  # one line, not one per call
    assert "ERROR anypod.store" not in logs and "ERROR anypod.http" not in logs, logs
