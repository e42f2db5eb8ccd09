"""What starts what: :class:`Runtime` builds a running anypod from settings and endpoints, and
starts its components in order (stopping them in reverse):

    store → notifier → credentials → usage → limits → audit → webhooks → sweeper → http →
    supervisor
    (+ whatever was added)

``anypod serve`` runs all of them (the supervisor keeps ``anypod.worker`` processes on
loopback); ``anypod server`` has no endpoint with a handler, so its supervisor starts none.
Stopping in reverse means workers finish and report their jobs while the API still listens,
and the store closes last. Later components (autoscaler, metrics exporter, gateway pollers)
join with :meth:`Runtime.add`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from anypod import notifier
from anypod import store as stores
from anypod.access import Credentials
from anypod.endpoints import Endpoint
from anypod.http import capacity, create_app
from anypod.http.protocol import Policy
from anypod.http.routing import Limits
from anypod.http.server import HttpServer
from anypod.service import JobService, Timing
from anypod.settings import Settings
from anypod.store import sealing
from anypod.supervisor import Supervisor
from anypod.sweeper import Sweeper
from anypod.webhooks import WebhookPolicy, WebhookSender
from anypod.worker.options import WorkerOptions

log = logging.getLogger("anypod")


class Component(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> Awaitable[None]: ...

    def stop(self) -> Awaitable[None]: ...


@dataclasses.dataclass
class Hooks:
    """A component from two functions (for parts whose methods have other names)."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def timing(settings: Settings) -> Timing:
    return Timing(
        run_retention_ms=settings.run_retention_ms,
        sync_retention_ms=settings.sync_retention_ms,
        lease=settings.lease_seconds,
        take_hold=settings.take_hold_seconds,
        ping_interval=settings.ping_interval_seconds,
    )


def limits(settings: Settings) -> Limits:
    return Limits(
        run=settings.run_max_bytes,
        runsync=settings.runsync_max_bytes,
        report=settings.result_max_bytes,
    )


def keyring(settings: Settings) -> sealing.Keyring:
    """The keys that seal job values at rest; a bad key refuses to start (ConfigError)."""
    keys = sealing.load(
        key=settings.encryption_key,
        old_keys=settings.encryption_old_keys,
        key_file=settings.encryption_key_file,
    )
    if keys.key_ids:
        log.info("%s", keys.describe())
    return keys


def connection_policy(settings: Settings) -> Policy:
    """What a connection allows its client: deadlines on slow ones, a cap on open connections."""
    most, crowded_at = capacity.caps(settings.max_connections)
    return Policy(
        head_timeout=settings.head_timeout_seconds,
        body_grace=settings.body_timeout_seconds,
        body_min_rate=settings.body_min_bytes_per_second,
        max_connections=most,
        crowded_at=crowded_at,
    )


def wakeups(settings: Settings) -> notifier.Notifier:
    """Across replicas (LISTEN/NOTIFY) on PostgreSQL; in process otherwise."""
    if not settings.replicated:
        return notifier.Notifier()
    from anypod.store.postgres_notifier import PostgresNotifier

    return PostgresNotifier(settings.database_url)


class Runtime:
    def __init__(self, settings: Settings, endpoints: Sequence[Endpoint]) -> None:
        self.settings = settings
        self.endpoints = list(endpoints)
        # one process owns SQLite and migrates it; replicas need `anypod migrate` first
        self.store = stores.from_url(
            settings.database_url, migrate=not settings.replicated, keys=keyring(settings)
        )
        self.notifier = wakeups(settings)
        by_name = {e.name: e for e in self.endpoints}
        self.credentials = Credentials(
            self.store,
            bootstrap=settings.api_keys,
            # every change is announced (PostgreSQL: NOTIFY; SQLite: a sidecar file)
            cache_seconds=5.0 if settings.replicated else 60.0,
            wakeups=self.notifier,
        )
        self.service = JobService(
            self.store,
            by_name,
            notify=self.notifier,
            timing=timing(settings),
            credentials=self.credentials,
            audit_retention_days=settings.audit_retention_days,
            auth_failures_per_minute=settings.auth_failures_per_minute,
        )
        self.webhooks = WebhookSender(
            self.store,
            WebhookPolicy(
                schedule=settings.webhook_schedule,
                secret=settings.webhook_secret,
                endpoint_secrets={e.name: e.webhook_secret for e in endpoints if e.webhook_secret},
                allow_private=settings.allow_private_webhooks,
            ),
            wakeups=self.notifier,
            clock=self.service.clock,
            interval=settings.sweep_interval_seconds,
        )
        self.sweeper = Sweeper(self.service, interval=settings.sweep_interval_seconds)
        self.app = create_app(self.service, limits=limits(settings))
        self.http = HttpServer(
            self.app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            before_stop=self.notifier.close,  # held long-polls answer now, not in 30 s
            policy=connection_policy(settings),
        )
        self.supervisor = Supervisor(self.worker_options)
        self.components: list[Component] = [
            Hooks("store", self.store.open, self.store.close),
            Hooks("notifier", self.notifier.start, self.notifier.stop),
            self.credentials,
            Hooks("exposure", self.check_exposure, _nothing),
            self.service.usage,
            self.service.limiter,
            self.service.audit,
            self.webhooks,
            self.sweeper,
            self.http,
            self.supervisor,
        ]
        self._started: list[Component] = []

    async def check_exposure(self) -> None:
        """Refuse to serve an open API on a public address (keys from the environment or the
        store count); warn in development mode."""
        warning = self.settings.check_exposure(await self.credentials.keys_required())
        if warning:
            log.warning(warning)

    def add(self, component: Component) -> None:
        """Start ``component`` after the others (and stop it before them)."""
        self.components.append(component)

    @property
    def url(self) -> str:
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{self.http.port}"

    async def start(self) -> None:
        try:
            for component in self.components:
                await component.start()
                self._started.append(component)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", component.name)

    async def worker_options(self) -> list[WorkerOptions]:
        """One options object per embedded worker, with a token per endpoint that lives as
        long as this server (kept in memory: it never piles up in the store)."""
        found = []
        for ep in self.endpoints:
            if not ep.handler or ep.workers <= 0:
                continue
            token = self.service.session_worker_token(ep.name)
            found += [
                WorkerOptions(
                    server=self.url,
                    endpoint=ep.name,
                    token=token,
                    handler=ep.handler,
                    worker_id=f"{ep.name}-{i + 1}",
                    concurrency=ep.concurrency,
                    batch=ep.batch,
                    batch_size=self.settings.batch_size,
                    batch_wait_ms=self.settings.batch_timeout_ms,
                    ping_interval=self.settings.ping_interval_seconds,
                    parent_pid=os.getpid(),
                )
                for i in range(ep.workers)
            ]
        return found

    async def serve(self) -> None:
        """Start, run until SIGINT or SIGTERM, stop."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        try:
            names = ", ".join(f"/v2/{e.name}" for e in self.endpoints)
            print(f"anypod listening on {self.url}  endpoints: {names}", flush=True)
            await stopping.wait()
        finally:
            await self.stop()


def run(settings: Settings, endpoints: Sequence[Endpoint]) -> None:
    """Serve until a signal: the body of ``anypod serve`` and ``anypod server``. Refuses a
    public address without API keys (:meth:`Runtime.check_exposure`)."""
    capacity.raise_open_file_limit()  # before the connection cap is derived from it
    runtime = Runtime(settings, endpoints)
    try:
        import uvloop
    except ImportError:
        asyncio.run(runtime.serve())
    else:
        uvloop.run(runtime.serve())
