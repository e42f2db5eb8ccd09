"""Assembling a running anypod from settings: store, service, API app, and embedded workers.

``anypod serve`` = the API plus ``anypod worker`` processes on loopback (embedded mode);
``anypod server`` = the API alone (``workers=0``). Both go through :func:`run_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import uvicorn

from anypod import notifier
from anypod import store as stores
from anypod.endpoints import Endpoint
from anypod.http import create_app
from anypod.service import JobService, Timing
from anypod.settings import Settings
from anypod.supervisor import Supervisor, WorkerSpec

log = logging.getLogger("anypod")


def timing(settings: Settings) -> Timing:
    return Timing(
        run_retention_ms=settings.run_retention_ms,
        sync_retention_ms=settings.sync_retention_ms,
        lease=settings.lease_seconds,
        take_hold=settings.take_hold_seconds,
        ping_interval=settings.ping_interval_seconds,
    )


def build_service(settings: Settings, endpoints: Sequence[Endpoint]) -> JobService:
    """SQLite migrates itself (embedded); PostgreSQL needs ``anypod migrate`` (replicas)."""
    embedded = settings.database_url.startswith("sqlite")
    store = stores.from_url(settings.database_url, migrate=embedded)
    wakeups = None if embedded else _postgres_notifier(settings.database_url)
    return JobService(
        store, {e.name: e for e in endpoints}, notify=wakeups, timing=timing(settings)
    )


def _postgres_notifier(url: str) -> notifier.Notifier:
    from anypod.store.postgres_notifier import PostgresNotifier

    return PostgresNotifier(url)


def local_url(settings: Settings, port: int) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{port}"


async def _worker_specs(
    service: JobService, settings: Settings, port: int, endpoints: Sequence[Endpoint]
) -> list[WorkerSpec]:
    specs = []
    for ep in endpoints:
        if not ep.handler or ep.workers <= 0:
            continue
        token = await service.mint_worker_token(ep.name)
        specs += [
            WorkerSpec(
                worker_id=f"{ep.name}-{i + 1}",
                endpoint=ep.name,
                handler=ep.handler,
                token=token,
                server=local_url(settings, port),
                concurrency=ep.concurrency,
                batch=ep.batch,
                ping_interval=settings.ping_interval_seconds,
            )
            for i in range(ep.workers)
        ]
    return specs


class _Server(uvicorn.Server):
    """uvicorn's server, but a signal also stops our workers, and is not re-raised at exit
    (uvicorn re-raises it, which would kill us before the workers are stopped)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


async def run_server(settings: Settings, endpoints: Sequence[Endpoint]) -> None:
    """Serve until SIGINT/SIGTERM, supervising embedded workers for endpoints with a handler."""
    warning = settings.check_exposure()
    if warning:
        log.warning(warning)
    service = build_service(settings, endpoints)
    app = create_app(service, settings, manage_store=False)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=75,
        lifespan="on",
        timeout_graceful_shutdown=2,
        proxy_headers=False,  # held long-polls would otherwise delay exit ~30 s
    )
    supervisor = Supervisor([])
    loop = asyncio.get_running_loop()

    def on_exit() -> None:
        supervisor.begin_stop()
        loop.call_soon_threadsafe(service.notifier.close)  # release held long-polls

    server = _Server(config, on_exit=on_exit)
    await service.store.open()
    try:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            supervisor.specs = await _worker_specs(service, settings, port, endpoints)
            await supervisor.start()
            names = ", ".join(f"/v2/{e.name}" for e in endpoints)
            print(
                f"anypod listening on {local_url(settings, port)}  endpoints: {names}", flush=True
            )
        await serving
    finally:
        await supervisor.stop()
        await service.store.close()


def run(settings: Settings, endpoints: Sequence[Endpoint]) -> None:
    try:
        import uvloop

        uvloop.run(run_server(settings, endpoints))
    except ImportError:
        asyncio.run(run_server(settings, endpoints))
