"""The ``anypod`` command. Composition only: parse flags, build settings, call into the package."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import uuid
from pathlib import Path
from typing import Annotated

import typer

from anypod import endpoints as eps
from anypod import errors
from anypod import settings as settings_module
from anypod import store as stores
from anypod.service import JobService

app = typer.Typer(
    help="Run RunPod-style serverless handlers on machines you own.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Database = Annotated[
    str | None,
    typer.Option(
        "--database", help="sqlite:///anypod.db or postgresql://... [env: ANYPOD_DATABASE_URL]"
    ),
]


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(exc: errors.AnypodError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(2)


def _endpoints(
    handler: str | None,
    names: list[str] | None,
    config: Path | None,
    workers: int,
    concurrency: int,
) -> list[eps.Endpoint]:
    found = eps.load_config(config) if config else []
    if handler:
        name = names[0] if names else eps.name_for_handler(handler)
        found.append(
            eps.Endpoint(
                name=eps.check_name(name), handler=handler, workers=workers, concurrency=concurrency
            )
        )
    elif names:
        found += [eps.Endpoint(name=eps.check_name(n), workers=0) for n in names]
    if not found:
        raise errors.ConfigError("give a HANDLER, --endpoint NAME, or --config FILE")
    return found


@app.command()
def serve(
    handler: Annotated[
        str | None, typer.Argument(help="path/to/file.py[:function] or module:function")
    ] = None,
    endpoint: Annotated[list[str] | None, typer.Option(help="endpoint name(s)")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes (0: API only)")] = 1,
    concurrency: Annotated[int, typer.Option(help="jobs per worker at once")] = 1,
    database: Database = None,
    config: Annotated[Path | None, typer.Option(help="anypod.toml with [endpoints.NAME]")] = None,
    insecure: Annotated[bool, typer.Option(help="allow a public bind without API keys")] = False,
) -> None:
    """The API plus worker processes on loopback: everything on one machine."""
    from anypod import compose

    try:
        settings = settings_module.from_env(
            host=host, port=port, database_url=database, insecure=insecure or None
        )
        _logging(settings.log_level)
        compose.run(settings, _endpoints(handler, endpoint, config, workers, concurrency))
    except errors.AnypodError as exc:
        raise _fail(exc) from exc


@app.command()
def server(
    endpoint: Annotated[list[str] | None, typer.Option(help="endpoint name(s)")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    database: Database = None,
    config: Annotated[Path | None, typer.Option()] = None,
    insecure: Annotated[bool, typer.Option()] = False,
) -> None:
    """The API only, for remote workers; run several replicas on one PostgreSQL."""
    from anypod import compose

    try:
        settings = settings_module.from_env(
            host=host, port=port, database_url=database, insecure=insecure or None
        )
        _logging(settings.log_level)
        found = [
            dataclasses.replace(e, workers=0) for e in _endpoints(None, endpoint, config, 0, 1)
        ]
        compose.run(settings, found)
    except errors.AnypodError as exc:
        raise _fail(exc) from exc


@app.command()
def worker(
    handler: Annotated[str, typer.Argument(help="path/to/file.py[:function] or module:function")],
    server: Annotated[
        list[str],
        typer.Option(
            help="anypod base URL, e.g. http://127.0.0.1:8000; repeat for replicas to fail over to"
        ),
    ],
    endpoint: Annotated[str, typer.Option(help="endpoint name")],
    token: Annotated[
        str,
        typer.Option(envvar="ANYPOD_WORKER_TOKEN", help="worker token (from anypod worker-env)"),
    ],
    concurrency: Annotated[int, typer.Option(help="jobs at once")] = 1,
    worker_id: Annotated[str | None, typer.Option(help="default: host-random")] = None,
    ping_interval: Annotated[float, typer.Option(help="seconds between pings")] = 10.0,
    gpu: Annotated[str | None, typer.Option(help="GPU label (default: nvidia-smi)")] = None,
    batch: Annotated[bool, typer.Option(help="HANDLER takes a list of jobs")] = False,
    batch_size: Annotated[
        int | None, typer.Option(envvar="BATCH_SIZE", help="max jobs per batch (batch handlers)")
    ] = None,
    batch_wait_ms: Annotated[
        float | None, typer.Option(envvar="BATCH_TIMEOUT_MS", help="max wait for a batch to fill")
    ] = None,
    batch_bucket: Annotated[
        str, typer.Option(help="comma-separated input fields a batch must share")
    ] = "",
) -> None:
    """Take jobs from a server and run them with HANDLER in a child process."""
    from anypod.batching import BatchSpec
    from anypod.worker import Worker, WorkerOptions

    _logging("INFO")
    wid = worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    opts = WorkerOptions(
        server=server[0],
        fallback_servers=tuple(server[1:]),
        endpoint=endpoint,
        token=token,
        handler=handler,
        worker_id=wid,
        concurrency=concurrency,
        ping_interval=ping_interval,
        gpu=gpu,
        batch=BatchSpec(bucket=tuple(filter(None, batch_bucket.split(",")))) if batch else None,
        batch_size=batch_size,
        batch_wait_ms=batch_wait_ms,
    )

    async def main() -> None:
        w = Worker(opts)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, w.request_stop)
        await w.run()

    asyncio.run(main())


@app.command("worker-env")
def worker_env(
    endpoint: Annotated[str, typer.Option(help="endpoint the worker serves")],
    server: Annotated[
        str, typer.Option(help="URL workers reach anypod at")
    ] = "http://127.0.0.1:8000",
    database: Database = None,
    worker_id: Annotated[str | None, typer.Option()] = None,
    gpu: Annotated[str, typer.Option(help="GPU label sent in URLs")] = "cpu",
) -> None:
    """Print the RUNPOD_* environment that makes an unmodified runpod worker serve ENDPOINT."""
    settings = settings_module.from_env(database_url=database)

    async def mint() -> str:
        async with stores.from_url(settings.database_url, migrate=True) as store:
            service = JobService(store, {endpoint: eps.Endpoint(name=endpoint)})
            return await service.mint_worker_token(endpoint)

    try:
        token = asyncio.run(mint())
    except errors.AnypodError as exc:
        raise _fail(exc) from exc
    wid = worker_id or f"{endpoint}-{uuid.uuid4().hex[:8]}"
    for key, value in runpod_env(server, endpoint, wid, token, gpu).items():
        typer.echo(f"{key}={value}")


def runpod_env(server: str, endpoint: str, worker_id: str, token: str, gpu: str) -> dict[str, str]:
    base = f"{server.rstrip('/')}/v2/{endpoint}"
    q = f"?gpu={gpu.replace(' ', '+')}"
    return {
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_POD_HOSTNAME": f"{worker_id}-{uuid.uuid4().hex[:8]}",
        "RUNPOD_AI_API_KEY": token,
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/{worker_id}{q}",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/{worker_id}/$ID{q}",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/{worker_id}/$ID{q}",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/{worker_id}{q}",
        "RUNPOD_PING_INTERVAL": "10000",
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    }


@app.command()
def migrate(database: Database = None) -> None:
    """Apply pending schema migrations."""
    settings = settings_module.from_env(database_url=database)

    async def run() -> list[int]:
        store = stores.from_url(settings.database_url, migrate=True)
        async with store:
            return []

    try:
        asyncio.run(run())
    except errors.AnypodError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{settings.database_url}: schema up to date")


def main() -> None:
    app()
