"""The SDK: ``Client`` and ``AsyncClient``, for RunPod's client API (and, async, its worker
protocol, as anypod's worker uses it).

Works against anypod and against RunPod itself (same API). :class:`BaseClient` builds every
request and reads every reply; each sibling only sends, through a sender from
:mod:`anypod.transport` (pass ``transport=``, e.g. ``httpx.ASGITransport(app)``, to talk to an
app in process). An error reply raises the exception of :mod:`anypod.errors` it stands for
(``JobNotFound``, ``Unauthorized``, ...; :mod:`anypod.protocols.errors` maps them).
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import orjson

from anypod import types
from anypod.protocols import errors as error_table
from anypod.protocols.runpod import paths
from anypod.transport import AiohttpSender, AsyncSender, Call, HttpxSender, Reply, SyncHttpxSender


class BaseClient:
    def __init__(self, base_url: str, api_key: str | None, *, raw_auth: bool) -> None:
        """``base_url``: the server (``http://host:8000``; a trailing ``/v2`` is accepted)."""
        self.base_url = base_url.rstrip("/").removesuffix(paths.PREFIX)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = api_key if raw_auth else f"Bearer {api_key}"

    # --- client API calls --------------------------------------------------------------------

    def _submit(
        self, template: str, endpoint: str, job_input: types.JSONDict, **extra: Any
    ) -> Call:
        body: types.JSONDict = {"input": job_input}
        body.update({k: v for k, v in extra.items() if v is not None})
        return Call("POST", paths.fill(template, endpoint=endpoint), body=orjson.dumps(body))

    def _runsync(
        self, endpoint: str, job_input: types.JSONDict, wait_ms: int, **extra: Any
    ) -> Call:
        call = self._submit(paths.RUNSYNC, endpoint, job_input, **extra)
        return dataclasses.replace(call, params={"wait": wait_ms}, hold=wait_ms / 1000)

    def _job(self, template: str, endpoint: str, job_id: str, wait_ms: int | None = None) -> Call:
        method = "GET" if template in (paths.STATUS, paths.STATUS_SYNC, paths.STREAM) else "POST"
        params = {"wait": wait_ms} if wait_ms is not None else None
        path = paths.fill(template, endpoint=endpoint, job_id=job_id)
        return Call(method, path, params=params, hold=(wait_ms or 0) / 1000)

    def _status(self, endpoint: str, job_id: str, wait_ms: int | None) -> Call:
        template = paths.STATUS if wait_ms is None else paths.STATUS_SYNC
        return self._job(template, endpoint, job_id, wait_ms)

    def _endpoint(self, method: str, template: str, endpoint: str) -> Call:
        return Call(method, paths.fill(template, endpoint=endpoint))

    # --- worker protocol calls ---------------------------------------------------------------

    def _take(self, endpoint: str, worker_id: str, batch_size: int, busy: bool) -> Call:
        params: dict[str, str | int] = {"job_in_progress": int(busy)}
        template = paths.JOB_TAKE
        if batch_size > 1:
            params["batch_size"] = batch_size
            template = paths.JOB_TAKE_BATCH
        return Call(
            "GET", paths.fill(template, endpoint=endpoint, worker_id=worker_id), params, hold=90
        )

    def _post_result(
        self,
        template: str,
        endpoint: str,
        worker_id: str,
        job_id: str,
        body: bytes,
        stream: bool,
        take: int = 0,
    ) -> Call:
        params: dict[str, str | int] = {"isStream": "true" if stream else "false"}
        if take:
            params["next"] = take
        path = paths.fill(template, endpoint=endpoint, worker_id=worker_id, job_id=job_id)
        return Call("POST", path, params, body=body)

    def _ping(self, endpoint: str, worker_id: str, job_ids: list[str], gpu: str | None) -> Call:
        params: dict[str, str | int] = {"runpod_version": "anypod"}
        if job_ids:
            params["job_id"] = ",".join(job_ids)
        if gpu:
            params["gpu"] = gpu
        return Call("GET", paths.fill(paths.PING, endpoint=endpoint, worker_id=worker_id), params)

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
        where = f"{reply.call.method} {reply.call.path}"
        raise error_table.from_reply(reply.status, body, where)


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
        result: types.JSONDict = self.send(self._submit(paths.RUN, endpoint, job_input, **extra))
        return result

    def runsync(
        self, endpoint: str, job_input: types.JSONDict, *, wait_ms: int = 90_000, **extra: Any
    ) -> types.JSONDict:
        result: types.JSONDict = self.send(self._runsync(endpoint, job_input, wait_ms, **extra))
        return result

    def status(self, endpoint: str, job_id: str, *, wait_ms: int | None = None) -> types.JSONDict:
        result: types.JSONDict = self.send(self._status(endpoint, job_id, wait_ms))
        return result

    def stream(self, endpoint: str, job_id: str, *, wait_ms: int = 10_000) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(paths.STREAM, endpoint, job_id, wait_ms))
        return result

    def cancel(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(paths.CANCEL, endpoint, job_id))
        return result

    def retry(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._job(paths.RETRY, endpoint, job_id))
        return result

    def purge_queue(self, endpoint: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._endpoint("POST", paths.PURGE_QUEUE, endpoint))
        return result

    def health(self, endpoint: str) -> types.JSONDict:
        result: types.JSONDict = self.send(self._endpoint("GET", paths.HEALTH, endpoint))
        return result


class AsyncClient(BaseClient):
    """Asyncio client: the same client API as :class:`Client`, plus the worker protocol."""

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
        """Queue a job. ``extra``: ``webhook``, ``policy``, ``s3Config``."""
        call = self._submit(paths.RUN, endpoint, job_input, **extra)
        result: types.JSONDict = await self.send(call)
        return result

    async def runsync(
        self, endpoint: str, job_input: types.JSONDict, *, wait_ms: int = 90_000, **extra: Any
    ) -> types.JSONDict:
        result: types.JSONDict = await self.send(
            self._runsync(endpoint, job_input, wait_ms, **extra)
        )
        return result

    async def status(
        self, endpoint: str, job_id: str, *, wait_ms: int | None = None
    ) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._status(endpoint, job_id, wait_ms))
        return result

    async def stream(self, endpoint: str, job_id: str, *, wait_ms: int = 10_000) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._job(paths.STREAM, endpoint, job_id, wait_ms))
        return result

    async def cancel(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._job(paths.CANCEL, endpoint, job_id))
        return result

    async def retry(self, endpoint: str, job_id: str) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._job(paths.RETRY, endpoint, job_id))
        return result

    async def purge_queue(self, endpoint: str) -> types.JSONDict:
        call = self._endpoint("POST", paths.PURGE_QUEUE, endpoint)
        result: types.JSONDict = await self.send(call)
        return result

    async def health(self, endpoint: str) -> types.JSONDict:
        result: types.JSONDict = await self.send(self._endpoint("GET", paths.HEALTH, endpoint))
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
        self,
        endpoint: str,
        worker_id: str,
        job_id: str,
        body: bytes,
        *,
        is_stream: bool = False,
        take: int = 0,
    ) -> list[types.JSONDict]:
        """Post a result; with ``take``, also claim up to that many jobs (anypod's ``?next=``)
        and return them."""
        call = self._post_result(paths.JOB_DONE, endpoint, worker_id, job_id, body, is_stream, take)
        return _next_jobs(await self.send(call))

    async def done_many(
        self, endpoint: str, worker_id: str, results: list[tuple[str, bytes]], *, take: int = 0
    ) -> tuple[list[types.JSONDict], list[types.JSONDict]]:
        """Several results in one post (anypod's ``job-done-batch``; RunPod has no such route).
        Returns the items the server refused (``{"id", "status", "code", "error"}``; every
        other one was applied) and the jobs claimed for ``take``."""
        items = b",".join(
            b'{"id":' + orjson.dumps(job_id) + b',"result":' + body + b"}"
            for job_id, body in results
        )
        path = paths.fill(paths.JOB_DONE_BATCH, endpoint=endpoint, worker_id=worker_id)
        params: dict[str, str | int] = {"next": take} if take else {}
        reply = await self.send(Call("POST", path, params, body=b"[" + items + b"]"))
        refused = reply.get("refused") if isinstance(reply, dict) else None
        refused = [r for r in refused if isinstance(r, dict)] if isinstance(refused, list) else []
        return refused, _next_jobs(reply)

    async def stream_chunk(self, endpoint: str, worker_id: str, job_id: str, body: bytes) -> None:
        call = self._post_result(paths.JOB_STREAM, endpoint, worker_id, job_id, body, False)
        await self.send(call)

    async def ping(
        self, endpoint: str, worker_id: str, job_ids: list[str], *, gpu: str | None = None
    ) -> None:
        await self.send(self._ping(endpoint, worker_id, job_ids, gpu))

    async def release(self, endpoint: str, worker_id: str, job_ids: list[str]) -> list[str]:
        """Hand taken jobs back to the queue (anypod's ``job-release``); the ids released."""
        path = paths.fill(paths.JOB_RELEASE, endpoint=endpoint, worker_id=worker_id)
        body = await self.send(Call("POST", path, body=orjson.dumps({"ids": job_ids})))
        found = body.get("released") if isinstance(body, dict) else None
        return [j for j in found if isinstance(j, str)] if isinstance(found, list) else []

    async def stops(self, endpoint: str, worker_id: str) -> list[str]:
        path = paths.fill(paths.JOB_STOP, endpoint=endpoint, worker_id=worker_id)
        body = await self.send(Call("GET", path, hold=90))
        if not isinstance(body, dict):
            return []
        return [j for j in body.get("jobsToStop", []) if isinstance(j, str)]


def _next_jobs(reply: Any) -> list[types.JSONDict]:
    """The jobs a result's reply carries (``?next=``); none from RunPod or an older server."""
    found = reply.get("next") if isinstance(reply, dict) else None
    return [j for j in found if isinstance(j, dict)] if isinstance(found, list) else []
