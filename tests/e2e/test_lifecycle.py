"""End to end: ``anypod serve`` subprocess + real worker processes + handler children."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.conftest import wait_status


def post(url: str, path: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    reply = httpx.post(f"{url}{path}", json=body, timeout=timeout)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def runsync(url: str, ep: str, inp: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return post(url, f"/v2/{ep}/runsync", {"input": inp, **extra})


def test_plain_raise_error_dict_and_none(serve_many: Any) -> None:
    s = serve_many(["echo", "raises", "error_dict", "returns_none", "passthrough"])
    echoed = runsync(s.url, "echo", {"x": 1})
    assert echoed["output"] == {"echo": {"x": 1}, "job_id": echoed["id"]}
    raised = runsync(s.url, "raises", {"message": "nope"})
    assert raised["status"] == "FAILED"
    doc = json.loads(raised["error"])
    assert doc["error_message"] == "nope" and doc["error_type"] == "<class 'ValueError'>"
    errored = runsync(s.url, "error_dict", {"message": "bad input"})
    assert errored == {**errored, "status": "FAILED", "error": "bad input"}
    none = runsync(s.url, "returns_none", {})
    assert none["status"] == "COMPLETED" and none["output"] is None
    passthrough = runsync(s.url, "passthrough", {}, s3Config={"bucketName": "b"})
    assert passthrough["output"]["s3Config"] == {"bucketName": "b"}


def test_crash_fails_the_job_and_the_worker_recovers(serve: Any) -> None:
    s = serve("dies")
    before = runsync(s.url, "dies", {})["output"]["pid"]
    crashed = runsync(s.url, "dies", {"crash": True})
    assert crashed["status"] == "FAILED" and "SIGKILL" in crashed["error"]
    exited = runsync(s.url, "dies", {"exit": 3})
    assert exited["status"] == "FAILED" and "exited with code 3" in exited["error"]
    after = runsync(s.url, "dies", {})
    assert after["status"] == "COMPLETED" and after["output"]["pid"] != before


def test_execution_timeout_kills_the_handler_and_next_job_runs(serve: Any) -> None:
    s = serve("sleeps")
    job = post(
        s.url,
        "/v2/sleeps/run",
        {"input": {"seconds": 60}, "policy": {"executionTimeout": 5000}},
    )
    started = time.monotonic()
    ended = wait_status(s.url, "sleeps", job["id"], {"TIMED_OUT"}, timeout=20)
    assert 4.5 < time.monotonic() - started < 12
    assert "execution timeout of 5000 ms" in ended["error"]
    nxt = runsync(s.url, "sleeps", {"seconds": 0})
    assert nxt["status"] == "COMPLETED" and nxt["output"]["slept"] == 0


def test_cancel_in_progress_stops_the_handler(serve: Any) -> None:
    s = serve("sleeps")
    job = post(s.url, "/v2/sleeps/run", {"input": {"seconds": 60}})
    wait_status(s.url, "sleeps", job["id"], {"IN_PROGRESS"})
    cancelled = post(s.url, f"/v2/sleeps/cancel/{job['id']}", {})
    assert cancelled["status"] == "CANCELLED"
    started = time.monotonic()
    nxt = runsync(s.url, "sleeps", {"seconds": 0})
    assert nxt["status"] == "COMPLETED" and time.monotonic() - started < 10
    assert wait_status(s.url, "sleeps", job["id"], {"CANCELLED"})["status"] == "CANCELLED"


def test_generator_streams_progress_and_aggregates(serve: Any) -> None:
    s = serve("streaming")
    job = post(s.url, "/v2/streaming/run", {"input": {"n": 5, "delay": 0.2}})
    seen_progress, chunks = False, []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(f"{s.url}/v2/streaming/status/{job['id']}").json()
        if status["status"] == "IN_PROGRESS" and isinstance(status.get("output"), dict):
            seen_progress = seen_progress or "step" in status["output"]
        stream = httpx.get(f"{s.url}/v2/streaming/stream/{job['id']}?wait=2000").json()
        chunks += [item["output"] for item in stream["stream"]]
        if stream["status"] == "COMPLETED" and not stream["stream"]:
            break
    assert chunks == [{"chunk": i} for i in range(5)]
    assert seen_progress
    final = httpx.get(f"{s.url}/v2/streaming/status/{job['id']}").json()
    assert final["output"] == [{"chunk": i} for i in range(5)]
    failed = runsync(s.url, "streaming", {"n": 3, "fail_at": 1})
    assert failed["status"] == "FAILED" and "failed at 1" in failed["error"]


def test_async_generator_without_aggregate(serve: Any) -> None:
    s = serve("async_gen")
    job = post(s.url, "/v2/async_gen/run", {"input": {"words": ["x", "y"]}})
    done = wait_status(s.url, "async_gen", job["id"], {"COMPLETED"})
    assert done["output"] == []
    stream = httpx.get(f"{s.url}/v2/async_gen/stream/{job['id']}").json()
    assert [i["output"] for i in stream["stream"]] == ["x", "y"]


def test_runpod_progress_update_works_unchanged(serve: Any) -> None:
    s = serve("runpod_progress")
    job = post(s.url, "/v2/runpod_progress/run", {"input": {"seconds": 3}})
    deadline, output = time.monotonic() + 20, None
    while time.monotonic() < deadline and output != "halfway":
        output = httpx.get(f"{s.url}/v2/runpod_progress/status/{job['id']}").json().get("output")
        time.sleep(0.1)
    assert output == "halfway"
    done = wait_status(s.url, "runpod_progress", job["id"], {"COMPLETED"})
    assert done["output"] == {"done": True}


def test_concurrency_modifier_runs_jobs_at_once(serve: Any) -> None:
    s = serve("concurrency")
    ids = [post(s.url, "/v2/concurrency/run", {"input": {"seconds": 1}})["id"] for _ in range(4)]
    results = [wait_status(s.url, "concurrency", i, {"COMPLETED"})["output"] for i in ids]
    latest_start = max(r["start"] for r in results)
    earliest_end = min(r["end"] for r in results)
    assert latest_start < earliest_end  # all four overlapped


def test_refresh_worker_restarts_the_handler_process(serve: Any) -> None:
    s = serve("refresh")
    first = runsync(s.url, "refresh", {})["output"]["pid"]
    second = runsync(s.url, "refresh", {})["output"]["pid"]
    assert first != second


def test_webhook_is_posted_with_runpod_envelope(serve: Any) -> None:
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        s = serve("echo")
        url = f"http://127.0.0.1:{hook.server_port}/cb"
        job = post(s.url, "/v2/echo/run", {"input": {"a": 1}, "webhook": url})
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received and received[0]["id"] == job["id"]
        assert received[0]["status"] == "COMPLETED" and received[0]["input"] == {"a": 1}
        assert received[0]["output"] == {"echo": {"a": 1}, "job_id": job["id"]}
        assert received[0]["webhook"] == url
    finally:
        hook.shutdown()
        hook.server_close()


def test_jobs_sent_while_the_handler_respawns_wait_for_the_new_one(serve: Any) -> None:
    s = serve("dies", extra=["--concurrency", "2"])
    with httpx.Client(base_url=s.url, timeout=10) as c:
        crash = c.post("/v2/dies/run", json={"input": {"crash": True}}).json()["id"]
        ids = [c.post("/v2/dies/run", json={"input": {"n": i}}).json()["id"] for i in range(10)]
    assert wait_status(s.url, "dies", crash, {"FAILED"})["status"] == "FAILED"
    done = [wait_status(s.url, "dies", i, {"COMPLETED", "FAILED"}) for i in ids]
    failed = [d for d in done if d["status"] != "COMPLETED"]
    # those the crash took down with it fail saying so; none fails for want of a handler
    assert all("killed by SIGKILL" in d["error"] for d in failed), failed
    assert len(failed) <= 1, failed


def test_a_result_too_large_for_the_server_fails_its_job_at_once(serve: Any) -> None:
    s = serve("echo", env={"ANYPOD_RESULT_MAX_BYTES": "2000"})
    started = time.monotonic()
    done = runsync(s.url, "echo", {"blob": "x" * 5000})
    assert done["status"] == "FAILED" and "too large" in done["error"], done
    assert time.monotonic() - started < 10  # not three runs, each after a lapsed lease
