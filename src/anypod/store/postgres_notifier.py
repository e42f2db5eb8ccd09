"""Wake-ups across replicas: the in-process :class:`notifier.Notifier`, plus LISTEN/NOTIFY.

``notify(topic)`` wakes this process's waiters at once and queues the topic for PostgreSQL;
one background task owns ONE dedicated connection that both LISTENs on channel ``anypod`` and
sends the queued topics. Topics that pile up while a send is in flight go out together in the
next single ``pg_notify`` statement, so a burst of submissions costs one NOTIFY per round trip,
not one per job, and the request that called ``notify`` never waits for the database.

Notifications carry the topic, plus a ``str`` payload as ``"<topic>\n<payload>"`` (other
payload objects stay in process). PostgreSQL refuses a payload of 8,000 bytes or more, so a
longer one goes as several notifications, split between its comma-separated items, all but the
last marked as continued; they go in one statement, so they arrive together and in order, and
the receiver joins them back into one payload (:func:`messages`). A notification PostgreSQL
still refuses is dropped with one log line; it never holds up the others. Our own notifications
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
MAX_PENDING = 10_000  # notifications kept for re-sending while disconnected; beyond, dropped
MAX_MESSAGE_BYTES = 7_999  # PostgreSQL: "payload string too long" from 8,000 bytes (UTF-8)
CONTINUED = "\x1f"  # starts the payload of every part of a split notification but the last


def messages(topic: str, payload: str | None) -> list[str]:
    """The NOTIFY payloads that carry ``topic`` and ``payload``: one if it fits, else one per
    run of the payload's comma-separated items that fits. An item too long on its own is left
    out (logged); a topic too long is not sent at all (logged; local waiters were woken)."""
    whole = topic if payload is None else f"{topic}\n{payload}"
    if _size(whole) <= MAX_MESSAGE_BYTES:
        return [whole]
    head = f"{topic}\n"
    room = MAX_MESSAGE_BYTES - _size(head) - _size(CONTINUED)
    if payload is None or room < 64:
        log.warning("not sending a notification: topic %.80r... is too long", topic)
        return []
    runs: list[list[str]] = [[]]
    size = 0
    for item in payload.split(","):
        n = _size(item) + 1  # with its comma
        if n - 1 > room:
            log.warning("notification %r: leaving out an item of %d bytes", topic, n - 1)
        elif size + n - 1 > room:
            runs.append([item])
            size = n
        else:
            runs[-1].append(item)
            size += n
    parts = [",".join(run) for run in runs if run] or [""]
    return [f"{head}{CONTINUED}{part}" for part in parts[:-1]] + [f"{head}{parts[-1]}"]


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


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
        self._pending: dict[str, list[str]] = {}  # each notification, as its messages
        self._parts: dict[tuple[int, str], list[str]] = {}  # what a split one brought so far
        self._kick = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pid: int | None = None

    def notify(self, topic: str, payload: object = None) -> None:
        self.dispatch(topic, payload)
        if self._task is not None and len(self._pending) < MAX_PENDING:
            text = payload if isinstance(payload, str) else None
            key = topic if text is None else f"{topic}\n{text}"
            if key not in self._pending and (sent := messages(topic, text)):
                self._pending[key] = sent
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
        self._parts.clear()
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
        (a half-open connection is otherwise noticed only when a NOTIFY goes missing). When
        PostgreSQL refuses the statement, each notification goes on its own, and only those
        it refuses again are dropped."""
        pending, self._pending = self._pending, {}
        try:
            if not pending:
                await conn.execute("SELECT 1", timeout=self._connect_timeout)
                return
            try:
                batch = [m for parts in pending.values() for m in parts]
                await conn.execute(SEND, batch, timeout=self._connect_timeout)
                pending.clear()
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                await self._send_each(conn, pending)
        finally:
            self._pending = {**pending, **self._pending}  # unsent: again after re-connecting

    async def _send_each(self, conn: Any, pending: dict[str, list[str]]) -> None:
        for key, parts in list(pending.items()):
            try:
                await conn.execute(SEND, parts, timeout=self._connect_timeout)
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                topic = key.partition("\n")[0]
                log.warning("NOTIFY for %.80r dropped: %s: %s", topic, type(exc).__name__, exc)
            del pending[key]

    def _on_notification(self, conn: Any, pid: int, channel: str, message: str) -> None:
        if pid == self._pid:
            return
        topic, _, payload = message.partition("\n")
        if payload.startswith(CONTINUED):
            self._parts.setdefault((pid, topic), []).append(payload[len(CONTINUED) :])
            return
        parts = self._parts.pop((pid, topic), None)
        if parts:
            payload = ",".join([*parts, payload])
        self.dispatch(topic, payload or None)

    def _wake_all(self) -> None:
        for topic in list(self._listeners):
            self.dispatch(topic)
