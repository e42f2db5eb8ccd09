"""Managed API keys against a real ``anypod serve`` (SQLite) and two ``anypod server`` replicas
(PostgreSQL): keys made with the CLI on the database, tenant isolation seen through the real
``runpod`` client, scopes, endpoint restriction, expiry, revocation and rotation, rate,
concurrency and quota limits with their headers, usage that adds up, and the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import runpod

from tests.conftest import FAST_ENV, Served, free_port, wait_status

Serve = Callable[..., Served]
ANYPOD = (sys.executable, "-m", "anypod")


def cli(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anypod", *args, "--database", database],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **FAST_ENV},
    )


def new_key(database: str, *args: str) -> dict[str, Any]:
    done = cli(database, "keys", "create", "--json", *args)
    assert done.returncode == 0, done.stderr
    record: dict[str, Any] = orjson.loads(done.stdout)
    assert record["key"].startswith(f"apk_{record['id']}_")
    return record


def auth(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'anypod.db'}"


def test_tenants_see_only_their_own_jobs(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    alice, bob = new_key(db, "--name", "alice"), new_key(db, "--name", "bob")
    admin = new_key(db, "--name", "ops", "--scopes", "admin")
    assert alice["tenant"] != bob["tenant"] and alice["scopes"] == ["cancel", "read", "run"]
    served = serve("echo")
    url = served.url
    runpod.endpoint_url_base = f"{url}/v2"
    runpod.api_key = alice["key"]
    job = runpod.Endpoint("echo").run({"secret": "alice's"})
    assert job.output(timeout=30)["echo"] == {"secret": "alice's"}
    for method, path in (
        ("GET", f"status/{job.job_id}"),
        ("GET", f"status-sync/{job.job_id}?wait=0"),
        ("GET", f"stream/{job.job_id}"),
        ("POST", f"cancel/{job.job_id}"),
        ("POST", f"retry/{job.job_id}"),
    ):
        theirs = httpx.request(method, f"{url}/v2/echo/{path}", headers=auth(bob))
        assert theirs.status_code == 404, (path, theirs.text)
        assert theirs.json()["code"] == "job_not_found"
    mine = httpx.get(f"{url}/v2/echo/status/{job.job_id}", headers=auth(alice)).json()
    assert mine["output"]["echo"] == {"secret": "alice's"}
    assert httpx.get(f"{url}/v2/echo/status/{job.job_id}", headers=auth(admin)).status_code == 200
    bob_health = httpx.get(f"{url}/v2/echo/health", headers=auth(bob)).json()
    assert bob_health["jobs"]["completed"] == 0
    alice_health = httpx.get(f"{url}/v2/echo/health", headers=auth(alice)).json()
    assert alice_health["jobs"]["completed"] == 1
    assert httpx.get(f"{url}/v2/echo/health", headers=auth(admin)).json()["jobs"]["completed"] == 1


def test_purge_removes_only_the_callers_queued_jobs(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    alice, bob = new_key(db, "--name", "alice"), new_key(db, "--name", "bob")
    served = serve(None, endpoint="q", workers=0)
    url = served.url
    ids = {
        who["id"]: [
            httpx.post(f"{url}/v2/q/run", json={"input": {}}, headers=auth(who)).json()["id"]
            for _ in range(3)
        ]
        for who in (alice, bob)
    }
    purged = httpx.post(f"{url}/v2/q/purge-queue", headers=auth(bob))
    assert purged.json() == {"removed": 3, "status": "completed"}
    for job_id in ids[alice["id"]]:
        status = httpx.get(f"{url}/v2/q/status/{job_id}", headers=auth(alice)).json()
        assert status["status"] == "IN_QUEUE"


def test_scopes_endpoints_and_credential_kinds(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    reader = new_key(db, "--name", "reader", "--scopes", "read")
    runner = new_key(db, "--name", "runner", "--scopes", "run", "--endpoints", "echo")
    served = serve("echo")
    url = served.url
    refused = httpx.post(f"{url}/v2/echo/run", json={"input": {}}, headers=auth(reader))
    assert refused.status_code == 403 and "run" in refused.json()["error"]
    job_id = httpx.post(f"{url}/v2/echo/run", json={"input": {}}, headers=auth(runner)).json()["id"]
    assert httpx.get(f"{url}/v2/echo/status/{job_id}", headers=auth(runner)).status_code == 403
    assert httpx.post(f"{url}/v2/other/run", json={}, headers=auth(runner)).status_code == 404
    assert httpx.get(f"{url}/admin/v1/keys", headers=auth(runner)).status_code == 403
    # an API key is no worker token, and a worker token no API key
    take = httpx.get(f"{url}/v2/echo/job-take/w9", headers=auth(runner))
    assert take.status_code == 401
    token = cli(db, "tokens", "create", "--endpoint", "echo", "--json")
    secret = orjson.loads(token.stdout)["token"]
    as_client = httpx.get(f"{url}/v2/echo/health", headers={"Authorization": secret})
    assert as_client.status_code == 401
    assert httpx.get(f"{url}/v2/echo/health").status_code == 401  # keys exist: no open mode


def test_expired_revoked_and_rotated_keys(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    kept = new_key(db, "--name", "kept")
    served = serve(None, endpoint="q", workers=0)
    health = f"{served.url}/v2/q/health"
    brief = new_key(db, "--name", "brief", "--expires", "3s")
    made = time.monotonic()
    assert httpx.get(health, headers=auth(brief)).status_code == 200
    assert httpx.get(health, headers=auth(kept)).status_code == 200
    time.sleep(max(0.0, made + 3.2 - time.monotonic()))
    assert httpx.get(health, headers=auth(brief)).status_code == 401
    rotated = cli(db, "keys", "rotate", kept["id"], "--json")
    fresh = orjson.loads(rotated.stdout)
    assert fresh["id"] == kept["id"] and fresh["key"] != kept["key"]
    assert httpx.get(health, headers=auth(kept)).status_code == 401  # at once
    assert httpx.get(health, headers=auth(fresh)).status_code == 200
    assert cli(db, "keys", "revoke", kept["id"]).returncode == 0
    assert httpx.get(health, headers=auth(fresh)).status_code == 401  # at once
    listed = [orjson.loads(line) for line in cli(db, "keys", "list", "--json").stdout.split()]
    assert {k["id"]: k["state"] for k in listed} == {brief["id"]: "expired", kept["id"]: "revoked"}
    assert all("key" not in k for k in listed)
    forged = f"apk_{kept['id']}_{'x' * 43}"
    assert httpx.get(health, headers={"Authorization": forged}).status_code == 401


def test_rate_concurrency_and_quota_limits_answer_429(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    fast = new_key(db, "--name", "fast", "--rate", "2/s")
    capped = new_key(db, "--name", "capped", "--concurrency", "2")
    metered = new_key(db, "--name", "metered", "--quota", "jobs=3/day")
    served = serve(None, endpoint="q", workers=0)
    url = served.url
    codes = [httpx.get(f"{url}/v2/q/health", headers=auth(fast)) for _ in range(6)]
    limited = [r for r in codes if r.status_code == 429]
    assert 3 <= len(limited) <= 4, [r.status_code for r in codes]
    reply = limited[0]
    assert reply.json()["code"] == "rate_limited" and reply.json()["limit"] == "rate"
    assert int(reply.headers["Retry-After"]) >= 1
    assert reply.headers["RateLimit-Policy"] == '"rate";q=2;w=1'
    assert reply.headers["RateLimit"].startswith('"rate";r=0;t=')
    run = [
        httpx.post(f"{url}/v2/q/run", json={"input": {}}, headers=auth(capped)) for _ in range(3)
    ]
    assert [r.status_code for r in run] == [200, 200, 429]
    assert run[2].json()["limit"] == "concurrency"
    httpx.post(f"{url}/v2/q/cancel/{run[0].json()['id']}", headers=auth(capped))
    again = httpx.post(f"{url}/v2/q/run", json={"input": {}}, headers=auth(capped))
    assert again.status_code == 200
    quota = [
        httpx.post(f"{url}/v2/q/run", json={"input": {}}, headers=auth(metered)) for _ in range(4)
    ]
    assert [r.status_code for r in quota] == [200, 200, 200, 429]
    assert quota[3].json()["limit"] == "quota:jobs"
    assert "jobs-" not in quota[3].headers["RateLimit-Policy"]
    assert quota[3].headers["RateLimit-Policy"].startswith('"quota-jobs";q=3;w=86400')


def test_concurrent_submits_never_pass_a_job_quota(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    metered = new_key(db, "--name", "metered", "--quota", "jobs=5/day")
    served = serve(None, endpoint="q", workers=0)

    def submit(_: int) -> int:
        body: dict[str, Any] = {"input": {}}
        return httpx.post(f"{served.url}/v2/q/run", json=body, headers=auth(metered)).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(submit, range(30)))
    assert codes.count(200) == 5 and codes.count(429) == 25


def test_a_retry_is_a_new_run_for_limits_and_usage(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    key = new_key(db, "--name", "k", "--quota", "jobs=2/day")
    admin = new_key(db, "--name", "ops", "--scopes", "admin")
    served = serve("raises")
    url = served.url
    failed = httpx.post(f"{url}/v2/raises/runsync", json={"input": {}}, headers=auth(key))
    job_id = failed.json()["id"]
    assert failed.json()["status"] == "FAILED"
    first = httpx.post(f"{url}/v2/raises/retry/{job_id}", headers=auth(key))
    assert first.status_code == 200
    wait_status(url, "raises", job_id, {"FAILED"}, headers=auth(key))
    second = httpx.post(f"{url}/v2/raises/retry/{job_id}", headers=auth(key))
    assert second.status_code == 429 and second.json()["limit"] == "quota:jobs"
    deadline, row = time.monotonic() + 10, dict[str, Any]()
    while time.monotonic() < deadline:
        query = {"key": key["id"]}
        rows = httpx.get(f"{url}/admin/v1/usage", params=query, headers=auth(admin)).json()
        row = rows["usage"][0] if rows["usage"] else {}
        if row.get("failed") == 2:
            break
        time.sleep(0.2)
    assert (row["submitted"], row["failed"]) == (2, 2)


def test_usage_adds_up_and_admin_acts_are_audited(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    admin = new_key(db, "--name", "ops", "--scopes", "admin")
    served = serve("echo")
    url = served.url
    made = httpx.post(
        f"{url}/admin/v1/keys",
        json={"name": "team-a", "tenant": "acme", "rate": "100/s"},
        headers=auth(admin),
    )
    assert made.status_code == 201, made.text
    team = made.json()
    ids = [
        httpx.post(f"{url}/v2/echo/run", json={"input": {"n": i}}, headers=auth(team)).json()["id"]
        for i in range(5)
    ]
    for job_id in ids:
        wait_status(url, "echo", job_id, {"COMPLETED"}, headers=auth(team))
    usage: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        query = {"key": team["id"]}
        usage = httpx.get(f"{url}/admin/v1/usage", params=query, headers=auth(admin)).json()[
            "usage"
        ]
        if usage and usage[0]["completed"] == 5:
            break
        time.sleep(0.2)
    (row,) = usage
    assert row["tenant"] == "acme" and row["endpoint"] == "echo" and row["submitted"] == 5
    assert row["completed"] == 5 and row["failed"] == 0 and row["bytes_in"] > 0
    assert row["bytes_out"] > 0
    as_cli = cli(db, "usage", "--json", "--key", team["id"])
    assert orjson.loads(as_cli.stdout)["completed"] == 5
    revoked = httpx.delete(f"{url}/admin/v1/keys/{team['id']}", headers=auth(admin))
    assert revoked.json()["state"] == "revoked"
    entries = httpx.get(f"{url}/admin/v1/audit", headers=auth(admin)).json()["entries"]
    acts = [(e["action"], e["actor"], e["target"]) for e in entries]
    assert ("key.create", admin["id"], team["id"]) in acts
    assert ("key.revoke", admin["id"], team["id"]) in acts
    assert ("admin.usage", admin["id"], team["id"]) in acts
    created_by_cli = [e for e in entries if e["actor"] == "cli" and e["action"] == "key.create"]
    assert [e["target"] for e in created_by_cli] == [admin["id"]]


def test_repeated_auth_failures_are_throttled_and_logged(serve: Serve, tmp_path: Path) -> None:
    db = sqlite(tmp_path)
    admin = new_key(db, "--name", "ops", "--scopes", "admin")
    served = serve(None, endpoint="q", workers=0, env={"ANYPOD_AUTH_FAILURES_PER_MINUTE": "5"})
    health = f"{served.url}/v2/q/health"
    codes = [httpx.get(health, headers={"Authorization": f"apk_{i}"}).status_code for i in range(8)]
    assert codes[:6] == [401] * 6 and set(codes[6:]) == {429}  # 429 once over 5
    throttled = httpx.get(health, headers={"Authorization": "apk_x"})
    assert throttled.status_code == 429 and throttled.json()["limit"] == "auth_failures"
    assert int(throttled.headers["Retry-After"]) >= 1
    # a good key from the same address is never throttled: workers behind it keep working
    assert httpx.get(health, headers=auth(admin)).status_code == 200
    served.stop()  # the minute's count is written at the latest when the server stops
    listed = cli(db, "audit", "--action", "auth.failed", "--json").stdout.split()
    (entry,) = [orjson.loads(line) for line in listed]
    assert entry["source"] == "127.0.0.1" and orjson.loads(entry["detail"])["count"] == 9
    assert "apk_" not in served.logs()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scope": ["admin"]}, "scope"),
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "x", "rate": "fast"}, "rate"),
        ({"name": "x", "quota": "jobs=lots/month"}, "quota"),
        ({"name": "x", "expires": "tomorrow"}, "expires"),
        ({"name": "x", "concurrency": 0}, "concurrency"),
        ({"name": "bad name\n"}, "name"),
        ({"name": "x", "endpoints": ["a\x00b"]}, "endpoints"),
        ({"name": ["x"]}, "name"),
    ],
)
def test_bad_key_requests_are_400_naming_the_field(
    serve: Serve, tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    admin = new_key(sqlite(tmp_path), "--name", "ops", "--scopes", "admin")
    served = serve(None, endpoint="q", workers=0)
    reply = httpx.post(f"{served.url}/admin/v1/keys", json=body, headers=auth(admin))
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"].split(".")[0] == field


def test_limits_and_revocation_hold_across_two_replicas(pg_url: str, tmp_path: Path) -> None:
    limited = new_key(pg_url, "--name", "shared", "--rate", "4/s", "--burst", "4")
    ports = [free_port(), free_port()]
    procs = []
    for port in ports:
        with (tmp_path / f"api{port}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        *ANYPOD,
                        "server",
                        "--endpoint",
                        "q",
                        "--port",
                        str(port),
                        "--database",
                        pg_url,
                    ],
                    env={**os.environ, **FAST_ENV},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url in urls:
            _wait_ready(url)
        started = time.monotonic()
        codes = [
            httpx.get(f"{urls[i % 2]}/v2/q/health", headers=auth(limited)).status_code
            for i in range(12)
        ]
        allowed = 4 + 4 * (time.monotonic() - started)  # the burst, and what refilled since
        assert codes.count(200) <= allowed, codes
        assert codes[:4] == [200] * 4 and 429 in codes
        other = new_key(pg_url, "--name", "other")
        assert httpx.get(f"{urls[1]}/v2/q/health", headers=auth(other)).status_code == 200
        assert cli(pg_url, "keys", "revoke", other["id"]).returncode == 0
        time.sleep(0.3)  # the NOTIFY's trip
        for url in urls:
            assert httpx.get(f"{url}/v2/q/health", headers=auth(other)).status_code == 401
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("store"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)
