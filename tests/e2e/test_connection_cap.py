"""More held requests than the server has file descriptors (issue 9): it keeps answering.

A real ``anypod serve`` whose open-file limit is 256 gets 320 ``/runsync`` requests that it
would hold for 20 s. It holds what its connection cap allows and refuses the rest with a JSON
503 (``busy``, ``Retry-After``): no connection is reset or left unanswered, ``/health`` and
``/run`` answer at once throughout, and the log has no traceback and no line per refusal.

Before the cap, the same load took every descriptor: libuv accepted and dropped connections,
``/health`` went unanswered, and the store could not open its files."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.conftest import FAST_ENV, Served, free_port

FILES = 256
HELD = 320
BODY = b'{"input": {}}'
RUNSYNC = (
    b"POST /v2/ep/runsync?wait=20000 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def few_files() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


class FewFiles(Served):
    def start(self, timeout: float = 30.0) -> Served:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=few_files,
            )
        self.wait_ready(timeout)
        return self


async def hold(port: int, opened: list[asyncio.StreamWriter]) -> bytes | str:
    """One runsync: its reply if one comes within 3 s, ``"held"`` if none, or what went wrong."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        writer.write(RUNSYNC)
        return await asyncio.wait_for(reader.read(), 3)
    except TimeoutError:
        return "held"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


async def load(port: int, url: str) -> tuple[list[bytes | str], list[float]]:
    """The held requests, 40 at a time; /health and /run timed while they are held."""
    opened: list[asyncio.StreamWriter] = []
    tasks = []
    for _ in range(0, HELD, 40):
        tasks += [asyncio.create_task(hold(port, opened)) for _i in range(40)]
        await asyncio.sleep(0.15)
    await asyncio.sleep(0.5)
    took = []
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for path, method in [("/health", "GET"), ("/v2/ep/run", "POST")] * 3:
            began = time.monotonic()
            reply = await http.request(method, path, json={"input": {}})
            assert reply.status_code == 200, reply.text
            took.append(time.monotonic() - began)
    results = await asyncio.gather(*tasks)
    for writer in opened:
        writer.close()
    return results, took


def check_refusal(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in head.lower(), reply
    found = orjson.loads(body)
    assert found["code"] == "busy" and found["request_id"], found


def test_more_held_requests_than_file_descriptors(tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, "-m", "anypod", "serve", "--endpoint", "ep", "--workers", "0"]
    args += ["--port", str(port), "--database", f"sqlite:///{tmp_path / 'anypod.db'}"]
    served = FewFiles(args, {**os.environ, **FAST_ENV}, tmp_path, port, tmp_path / "serve.log")
    served.start()
    try:
        results, took = asyncio.run(load(port, served.url))
    finally:
        served.stop()
    held = [r for r in results if r == "held"]
    refused = [r for r in results if isinstance(r, bytes) and r]
    broken = [r for r in results if r != "held" and not (isinstance(r, bytes) and r)]
    assert not broken, broken[:5]
    for reply in refused:
        check_refusal(reply)
    assert len(held) >= FILES // 2 and len(refused) >= HELD - FILES, (len(held), len(refused))
    assert max(took) < 1.0, took
    log = served.log_path.read_text()
    assert "Traceback" not in log and "Too many open files" not in log, log[-4000:]
    assert len(log.splitlines()) < 30, log[-4000:]
