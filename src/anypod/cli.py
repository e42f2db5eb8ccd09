"""The ``anypod`` command. Composition only: parse flags, build settings, call into the package."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from pathlib import Path
from typing import Annotated

import typer

from anypod import cli_access, errors, logs
from anypod import endpoints as eps
from anypod import settings as settings_module
from anypod import store as stores
from anypod.protocols.runpod import worker_env as runpod_env
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

KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--encryption-key-file",
        help="encrypt job data at rest with these keys: one base64 key a line, the first"
        " encrypts, the rest only decrypt [env: ANYPOD_ENCRYPTION_KEY_FILE]",
    ),
]


def _fail(exc: errors.AnypodError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(2)


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


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
    encryption_key_file: KeyFile = None,
) -> None:
    """The API plus worker processes on loopback: everything on one machine."""
    from anypod import runtime

    try:
        settings = settings_module.from_env(
            host=host,
            port=port,
            database_url=database,
            insecure=insecure or None,
            encryption_key_file=_path(encryption_key_file),
        )
        logs.configure(settings.log_level)
        runtime.run(settings, _endpoints(handler, endpoint, config, workers, concurrency))
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
    encryption_key_file: KeyFile = None,
) -> None:
    """The API only, for remote workers; run several replicas on one PostgreSQL."""
    from anypod import runtime

    try:
        settings = settings_module.from_env(
            host=host,
            port=port,
            database_url=database,
            insecure=insecure or None,
            encryption_key_file=_path(encryption_key_file),
        )
        logs.configure(settings.log_level)
        found = [
            dataclasses.replace(e, workers=0) for e in _endpoints(None, endpoint, config, 0, 1)
        ]
        runtime.run(settings, found)
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
        int | None, typer.Option(help="max jobs per batch (batch handlers) [env: BATCH_SIZE]")
    ] = None,
    batch_wait_ms: Annotated[
        float | None, typer.Option(help="max wait for a batch to fill [env: BATCH_TIMEOUT_MS]")
    ] = None,
    batch_bucket: Annotated[
        str, typer.Option(help="comma-separated input fields a batch must share")
    ] = "",
) -> None:
    """Take jobs from a server and run them with HANDLER in a child process."""
    from anypod.batching import BatchSpec
    from anypod.worker.options import WorkerOptions
    from anypod.worker.parent import serve

    logs.configure("INFO")
    try:
        settings = settings_module.from_env()
    except errors.AnypodError as exc:
        raise _fail(exc) from exc
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
        batch_size=settings.batch_size if batch_size is None else batch_size,
        batch_wait_ms=settings.batch_timeout_ms if batch_wait_ms is None else batch_wait_ms,
    )
    try:
        asyncio.run(serve(opts))
    except (errors.Unauthorized, errors.EndpointNotFound) as exc:
        typer.secho(
            f"error: the server refused this worker ({exc}); check --endpoint and the worker"
            " token (ANYPOD_WORKER_TOKEN, from `anypod worker-env`)",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from exc


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
    """Print the RUNPOD_* environment that makes an unmodified runpod worker serve ENDPOINT.

    The output works as `set -a; . ./worker.env; set +a`, `docker run --env-file worker.env`
    and `env $(cat worker.env) CMD` alike.
    """
    try:
        eps.check_name(endpoint)
        runpod_env.check_server(server)
        if worker_id is not None:
            runpod_env.check_worker_id(worker_id)
    except errors.AnypodError as exc:
        raise _fail(exc) from exc
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
    hostname = f"{wid}-{uuid.uuid4().hex[:8]}"
    env = runpod_env.worker_env(server, endpoint, wid, token, gpu=gpu, hostname=hostname)
    try:
        text = runpod_env.env_file(env)
    except errors.AnypodError as exc:
        raise _fail(exc) from exc
    typer.echo(text, nl=False)
    typer.echo(
        f"worker-env: the first line, {runpod_env.PLACEHOLDER_LINE}, keeps the job-id placeholder"
        f" {runpod_env.JOB_ID_PLACEHOLDER} literal when a shell sources this file"
        " (set -a; . ./worker.env; set +a); docker --env-file and env $(cat worker.env)"
        " pass it on as a harmless extra variable",
        err=True,
    )


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


cli_access.register(app)  # keys, tokens, usage, audit


def main() -> None:
    app()
