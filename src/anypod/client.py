"""The SDK: ``Client`` and ``AsyncClient`` over httpx, for the client API and the worker protocol.

Works against anypod and against RunPod itself (same API). Sync and async share one
:class:`BaseClient` that builds every request and reads every reply; each sibling only sends,
through a sender from :mod:`anypod.transport`. Pass ``transport=`` (e.g.
``httpx.ASGITransport(app)``) to talk to an app in process.
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import orjson

from anypod import errors, types
from anypod.transport import (
    AiohttpSender,
    AsyncSender,
    Call,
    HttpxSender,
    Reply,
    SyncHttpxSender,
)


class BaseClient:
    def __init__(self, base_url: str, api_key: str | None, *, raw_auth: bool) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v2"):
            self.base_url += "/v2"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = api_key if raw_auth else f"Bearer {api_key}"

    # --- client API calls --------------------------------------------------------------------

    def _submit(self, endpoint: str, op: str, job_input: types.JSONDict, **extra: Any) -> Call:
        body: types.JSONDict = {"input": job_input}
        body.update({k: v for k, v in extra.items() if v is not None})
        return Call("POST", f"/{endpoint}/{op}", body=orjson.dumps(body))

    def _runsync(
        self, endpoint: str, job_input: types.JSONDict, wait_ms: int, **extra: Any
    ) -> Call:
        call = self._submit(endpoint, "runsync", job_input, **extra)
        return dataclasses.replace(call, params={"wait": wait_ms}, hold=wait_ms / 1000)

    def _job(self, endpoint: str, op: str, job_id: str, wait_ms: int | None = None) -> Call:
        method = "GET" if op in ("status", "status-sync", "stream") else "POST"
        params = {"wait": wait_ms} if wait_ms is not None else None
        hold = (wait_ms or 0) / 1000
        return Call(method, f"/{endpoint}/{op}/{job_id}", params=params, hold=hold)

    # --- worker protocol calls ---------------------------------------------------------------

    def _take(self, endpoint: str, worker_id: str, batch_size: int, busy: bool) -> Call:
        params: dict[str, str | int] = {"job_in_progress": int(busy)}
        if batch_size > 1:
            params["batch_size"] = batch_size
            return Call("GET", f"/{endpoint}/job-take-batch/{worker_id}", params, hold=90)
        return Call("GET", f"/{endpoint}/job-take/{worker_id}", params, hold=90)

    def _post_result(
        self, endpoint: str, op: str, worker_id: str, job_id: str, body: bytes, is_stream: bool
    ) -> Call:
        params = {"isStream": "true" if is_stream else "false"}
        return Call("POST", f"/{endpoint}/{op}/{worker_id}/{job_id}", params, body=body)

    def _ping(self, endpoint: str, worker_id: str, job_ids: list[str], gpu: str | None) -> Call:
        params: dict[str, str | int] = {"runpod_version": "anypod"}
        if job_ids:
            params["job_id"] = ",".join(job_ids)
        if gpu:
            params["gpu"] = gpu
        return Call("GET", f"/{endpoint}/ping/{worker_id}", params)

    # --- replies -----------------------------------------------------------------------------

    def _read(self, reply: Reply) -> Any:
        if reply.status == 204:
            return None
        try:
            body = orjson.loads(reply.content) if reply.content else None
        except orjson.JSONDecodeError:
            body = reply.content.decode(errors="replace")
        if 200 <= reply.status < 300:
            return body
        message = body.get("error") if isinstance(body, dict) else None
        raise errors.ClientError(
            f"{reply.call.method} {reply.call.path} -> {reply.status}: {message or body}",
            status_code=reply.status,
            body=body,
        )


class Client(BaseClient):
    """Blocking client. ``with Client(url, api_key) as c: c.runsync("ep", {...})``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        raw_auth: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, raw_auth=raw_auth)
        self._sender = SyncHttpxSender(self.base_url, self.headers, transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sender.close()

    def send(self, call: Call) -> Any:
        return self._read(self._sender.send(call))

    def run(self, endpoint: str, job_input: types.JSONDict, **extra: Any) -> types.JSONDict:
        """Queue a job. ``extra``: ``webhook``, ``policy``, ``s3Config``."""
        result: types.JSONDict = self.send(self._submit(endpoint, "run", job_input, **extra))
        return result

    def runsync(
        self, endpoint: str, job_input: types.JSONDict, *, wait_ms: int = 90_000, **extra: Any
    ) -> types.JSONDict:
        result: types.JSONDict = self.send(self._runsync(endpoint, job_input, wait_ms, **extra))
        return result

    def status(self, endpoint: str, job_id: str, *, wait_ms: int | None = None) -> types.JSONDict:
        op = "status" if wait_ms is None else "status-sync"
        result: types.JSONDict = self.send(self._job(endpoint, op, job_id, wait_ms))
        return result

    def stream(self, endpoint: str, job_id: str, *, wait_ms: int = 10_000) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(endpoint, "stream", job_id, wait_ms))
        return result

    def cancel(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(endpoint, "cancel", job_id))
        return result

    def retry(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(endpoint, "retry", job_id))
        return result

    def purge_queue(self, endpoint: str) -> types.JSONDict:
        result: types.JSONDict = self.send(Call("POST", f"/{endpoint}/purge-queue"))
        return result

    def health(self, endpoint: str) -> types.JSONDict:
        result: types.JSONDict = self.send(Call("GET", f"/{endpoint}/health"))
        return result


class AsyncClient(BaseClient):
    """Asyncio client with the client API and the worker protocol (as anypod's worker uses)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        raw_auth: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        http: Literal["httpx", "aiohttp"] = "httpx",
    ) -> None:
        """``http="aiohttp"`` sends with aiohttp: less CPU per request (anypod's worker)."""
        super().__init__(base_url, api_key, raw_auth=raw_auth)
        self._sender: AsyncSender
        if http == "aiohttp":
            self._sender = AiohttpSender(self.base_url, self.headers)
        else:
            self._sender = HttpxSender(self.base_url, self.headers, transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def send(self, call: Call) -> Any:
        return self._read(await self._sender.send(call))

    async def run(self, endpoint: str, job_input: types.JSONDict, **extra: Any) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._submit(endpoint, "run", job_input, **extra))
        return result

    async def runsync(
        self, endpoint: str, job_input: types.JSONDict, *, wait_ms: int = 90_000, **extra: Any
    ) -> types.JSONDict:
        call = self._runsync(endpoint, job_input, wait_ms, **extra)
        result: types.JSONDict = await self.send(call)
        return result

    async def status(
        self, endpoint: str, job_id: str, *, wait_ms: int | None = None
    ) -> types.JSONDict:
        op = "status" if wait_ms is None else "status-sync"
        result: types.JSONDict = await self.send(self._job(endpoint, op, job_id, wait_ms))
        return result

    async def stream(self, endpoint: str, job_id: str, *, wait_ms: int = 10_000) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._job(endpoint, "stream", job_id, wait_ms))
        return result

    async def cancel(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._job(endpoint, "cancel", job_id))
        return result

    # --- worker protocol ---------------------------------------------------------------------

    async def take(
        self, endpoint: str, worker_id: str, *, batch_size: int = 1, busy: bool = False
    ) -> list[types.JSONDict]:
        """Long-poll for jobs; [] when the server held the request and none came."""
        body = await self.send(self._take(endpoint, worker_id, batch_size, busy))
        if body is None:
            return []
        return body if isinstance(body, list) else [body]

    async def done(
        self, endpoint: str, worker_id: str, job_id: str, body: bytes, *, is_stream: bool = False
    ) -> None:
        await self.send(self._post_result(endpoint, "job-done", worker_id, job_id, body, is_stream))

    async def done_many(
        self, endpoint: str, worker_id: str, results: list[tuple[str, bytes]]
    ) -> None:
        """Several results in one post (anypod's ``job-done-batch``; RunPod has no such route)."""
        items = b",".join(
            b'{"id":' + orjson.dumps(job_id) + b',"result":' + body + b"}"
            for job_id, body in results
        )
        path = f"/{endpoint}/job-done-batch/{worker_id}"
        await self.send(Call("POST", path, body=b"[" + items + b"]"))

    async def stream_chunk(self, endpoint: str, worker_id: str, job_id: str, body: bytes) -> None:
        await self.send(self._post_result(endpoint, "job-stream", worker_id, job_id, body, False))

    async def ping(
        self, endpoint: str, worker_id: str, job_ids: list[str], *, gpu: str | None = None
    ) -> None:
        await self.send(self._ping(endpoint, worker_id, job_ids, gpu))

    async def stops(self, endpoint: str, worker_id: str) -> list[str]:
        body = await self.send(Call("GET", f"/{endpoint}/job-stop/{worker_id}", hold=90))
        if not isinstance(body, dict):
            return []
        return [j for j in body.get("jobsToStop", []) if isinstance(j, str)]
