"""Slow clients are cut off (issue 9): a request's head must arrive within the head deadline and
its body no slower than the minimum rate after a grace, else the connection is closed with a
408 JSON reply. Requests that are in and held by the server (runsync, status-sync) and idle
keep-alive connections are not the client's delay, and are left alone. A real socket, with
short deadlines from the settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from anypod.endpoints import Endpoint
from anypod.runtime import Runtime
from anypod.settings import Settings

DEADLINE = 0.6  # head deadline and body grace, seconds
RATE = 2000  # bytes a second, at least, after the grace


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    settings = Settings(
        port=0,
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        head_timeout_seconds=DEADLINE,
        body_timeout_seconds=DEADLINE,
        body_min_bytes_per_second=RATE,
    )
    runtime = Runtime(settings, [Endpoint(name="ep", workers=0)])
    await runtime.start()
    try:
        yield runtime.http.port
    finally:
        await runtime.stop()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def reply(
    reader: asyncio.StreamReader, within: float
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and body of one reply (read to the connection's end)."""
    raw = await asyncio.wait_for(reader.read(), within)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return (int(lines[0].split()[1]) if lines[0] else 0), headers, body


def check_408(status: int, headers: dict[bytes, bytes], body: bytes) -> dict[str, str]:
    assert status == 408 and headers[b"content-type"] == b"application/json", (status, body)
    found: dict[str, str] = orjson.loads(body)
    assert found["code"] == "request_timeout" and found["request_id"]
    assert headers[b"x-request-id"].decode() == found["request_id"]
    return found


async def test_a_half_sent_head_is_cut_off_with_a_408(port: int) -> None:
    reader, writer = await connect(port)
    began = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    status, headers, body = await reply(reader, 5)
    took = time.monotonic() - began
    assert "head" in check_408(status, headers, body)["error"]
    assert DEADLINE * 0.9 < took < DEADLINE + 1.5, took
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    """Closed as an idle connection is, with no reply: there is no request to answer."""
    reader, writer = await connect(port)
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert DEADLINE * 0.9 < time.monotonic() - began < DEADLINE + 1.5
    writer.close()


async def test_a_trickled_body_is_cut_off(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(
        b"POST /v2/ep/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\nX-Request-Id: trickle-1\r\n\r\n{"
    )
    began = time.monotonic()

    async def trickle() -> None:
        for _ in range(100):
            await asyncio.sleep(0.1)
            writer.write(b" ")  # 10 bytes a second
            await writer.drain()

    dripping = asyncio.create_task(trickle())
    try:
        found = check_408(*await reply(reader, 5))
    finally:
        dripping.cancel()
    assert found["request_id"] == "trickle-1" and "body" in found["error"]
    assert time.monotonic() - began < DEADLINE + 1.5
    writer.close()


async def test_a_body_at_the_minimum_rate_is_taken_however_long(port: int) -> None:
    """Sent over three graces, at twice the minimum rate: accepted."""
    body = b'{"input": {"pad": "' + b"x" * int(RATE * 2 * DEADLINE * 3) + b'"}}'
    reader, writer = await connect(port)
    writer.write(
        b"POST /v2/ep/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    piece = RATE * 2 // 10
    for start in range(0, len(body), piece):
        writer.write(body[start : start + piece])
        await writer.drain()
        await asyncio.sleep(0.1)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


async def test_held_requests_and_idle_keep_alive_are_not_cut(port: int) -> None:
    """A runsync the server holds past every deadline, then the same connection idle past the
    head deadline, then a second request on it: all answered."""
    reader, writer = await connect(port)
    body = b'{"input": {}}'
    wait_ms = int(DEADLINE * 3 * 1000)
    writer.write(
        b"POST /v2/ep/runsync?wait=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (wait_ms, len(body), body)
    )
    began = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200") and time.monotonic() - began >= DEADLINE * 2, head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert orjson.loads(await reader.readexactly(length))["status"] == "IN_QUEUE"
    await asyncio.sleep(DEADLINE * 2)  # idle keep-alive: uvicorn's keep-alive timeout governs
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


async def test_many_slow_connections_are_all_closed_and_health_still_answers(port: int) -> None:
    held = [await connect(port) for _ in range(200)]
    for _, writer in held:
        writer.write(b"POST /v2/ep/run HTTP/1.1\r\nHost: x\r\nContent-Len")
    reader, writer = await connect(port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reply(reader, 2))[0] == 200
    writer.close()
    replies = await asyncio.gather(*(reply(r, DEADLINE + 3) for r, _ in held))
    assert [status for status, _, _ in replies] == [408] * len(held)
    for _, w in held:
        w.close()
