"""The runtime with a real socket: components start in order and stop in reverse, and the HTTP
server's own errors are JSON too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from anypod.endpoints import Endpoint
from anypod.runtime import Runtime
from anypod.settings import Settings


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return reply


async def test_runtime_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    settings = Settings(port=0, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    runtime = Runtime(settings, [Endpoint(name="ep", workers=0)])
    assert [c.name for c in runtime.components] == [
        "store", "notifier", "credentials", "exposure", "usage", "limits", "audit", "webhooks",
        "sweeper",
        "http", "supervisor",
    ]  # fmt: skip
    log: list[str] = []
    runtime.add(Recorder("later", log))
    await runtime.start()
    try:
        async with httpx.AsyncClient(base_url=runtime.url) as http:
            assert (await http.get("/health")).json()["store"] is True
            assert (await http.post("/v2/ep/run", json={"input": {}})).status_code == 200
        garbage = await raw_request(runtime.http.port, b"NOT HTTP AT ALL\r\n\r\n")
        head, _, body = garbage.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head
        assert orjson.loads(body)["code"] == "invalid_request"
    finally:
        await runtime.stop()
    assert log == ["start later", "stop later"]
    assert runtime.service.notifier.closed  # held long-polls were released before the stop
    await runtime.stop()  # twice is harmless


async def test_a_failed_start_stops_what_had_started(tmp_path: Path) -> None:
    settings = Settings(port=0, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    runtime = Runtime(settings, [])
    log: list[str] = []

    class Broken(Recorder):
        async def start(self) -> None:
            raise RuntimeError("cannot")

    runtime.components.insert(1, Recorder("first", log))
    runtime.components.insert(2, Broken("broken", log))
    try:
        await runtime.start()
    except RuntimeError:
        pass
    else:
        raise AssertionError("start should fail")
    assert log == ["start first", "stop first"]
