"""Wake-ups across replicas: the in-process :class:`notifier.Notifier`, plus LISTEN/NOTIFY.

``notify(topic)`` wakes this process's waiters at once and queues the topic for PostgreSQL;
one background task owns ONE dedicated connection that both LISTENs on channel ``anypod`` and
sends the queued topics. Topics that pile up while a send is in flight go out together in the
next single ``pg_notify`` statement, so a burst of submissions costs one NOTIFY per round trip,
not one per job, and the request that called ``notify`` never waits for the database.

Notifications carry the topic, plus a ``str`` payload as ``"<topic>\n<payload>"`` (other
payload objects stay in process). Our own notifications
come back to us with our connection's backend pid and are skipped. After the connection is
lost, the task re-connects with backoff and then wakes every local waiter once, because
notifications sent while we were away are gone (a spurious wake only costs a store read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from anypod import notifier
from anypod.store.postgres import is_unavailable, redact

log = logging.getLogger(__name__)
CHANNEL = "anypod"
SEND = "SELECT pg_notify('anypod', topic) FROM unnest($1::text[]) AS topic"
MAX_PENDING = 10_000  # topics kept for re-sending while disconnected; beyond that, dropped


class PostgresNotifier(notifier.Notifier):
    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        keepalive: float = 10.0,
        max_backoff: float = 2.0,
    ) -> None:
        super().__init__()
        self.url = url
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._max_backoff = max_backoff
        self._pending: set[str] = set()
        self._kick = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pid: int | None = None

    def notify(self, topic: str, payload: object = None) -> None:
        self.dispatch(topic, payload)
        if self._task is not None and len(self._pending) < MAX_PENDING:
            self._pending.add(f"{topic}\n{payload}" if isinstance(payload, str) else topic)
            self._kick.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Start listening; waits up to ``connect_timeout`` for the first LISTEN, then goes on
        (re-trying in the background) so an API replica can start while PostgreSQL is away."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="anypod-pg-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._connect_timeout)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._pending.clear()

    async def _run(self) -> None:
        backoff = 0.05
        first = True
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=self._connect_timeout)
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("LISTEN connection to %s failed", redact(self.url))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.05
            try:
                await self._serve(conn, wake_all=not first)
            except Exception as exc:
                if is_unavailable(exc):
                    log.warning("LISTEN connection lost (%s); re-connecting", exc)
                else:
                    log.exception("LISTEN connection failed; re-connecting")
                    await asyncio.sleep(self._max_backoff)
            finally:
                self._connected.clear()
                conn.terminate()
            first = False

    async def _serve(self, conn: Any, *, wake_all: bool) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        self._pid = conn.get_server_pid()
        self._connected.set()
        if wake_all:
            self._wake_all()
        while not lost.is_set():
            await self._wait_for_work(lost)
            if lost.is_set():
                return
            await self._send(conn)

    async def _wait_for_work(self, lost: asyncio.Event) -> None:
        self._kick.clear()
        if self._pending:
            return
        waits = [asyncio.ensure_future(e.wait()) for e in (self._kick, lost)]
        try:
            await asyncio.wait(waits, timeout=self._keepalive, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _send(self, conn: Any) -> None:
        """Send everything queued in one statement; with nothing queued, a keepalive probe
        (a half-open connection is otherwise noticed only when a NOTIFY goes missing)."""
        topics, self._pending = self._pending, set()
        try:
            if topics:
                await conn.execute(SEND, sorted(topics), timeout=self._connect_timeout)
            else:
                await conn.execute("SELECT 1", timeout=self._connect_timeout)
        except BaseException:
            self._pending |= topics  # re-send after re-connecting
            raise

    def _on_notification(self, conn: Any, pid: int, channel: str, message: str) -> None:
        if pid != self._pid:
            topic, _, payload = message.partition("\n")
            self.dispatch(topic, payload or None)

    def _wake_all(self) -> None:
        for topic in list(self._listeners):
            self.dispatch(topic)
