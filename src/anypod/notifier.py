"""Wake-ups for long-polls: ``job-take``, ``job-stop``, ``runsync``, ``status-sync``, ``stream``.

A waiter starts listening BEFORE it checks the store, so a notification that lands between the
check and the wait is never lost. The base class dispatches in process (SQLite); a PostgreSQL
subclass also publishes through NOTIFY so waiters on other replicas wake too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


def queue_topic(endpoint: str) -> str:
    return f"queue:{endpoint}"


def job_topic(job_id: str) -> str:
    return f"job:{job_id}"


def stop_topic(endpoint: str, worker_id: str) -> str:
    return f"stop:{endpoint}:{worker_id}"


WEBHOOKS = "webhooks"


class Listener:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.payloads: list[object] = []

    @property
    def payload(self) -> object:
        """The latest payload (e.g. the finished job), or None."""
        return self.payloads[-1] if self.payloads else None

    def wake(self, payload: object = None) -> None:
        if payload is not None:
            self.payloads.append(payload)
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True if woken, False on timeout. Re-arms for the next wait."""
        if timeout <= 0 or self._event.is_set():
            woken = self._event.is_set()
            self._event.clear()
            return woken
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the event is set, which left a shutting-down server spinning.
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Notifier:
    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self.closed = False

    def close(self) -> None:
        """Shutting down: wake every waiter now, and make later waits return at once."""
        self.closed = True
        for group in self._listeners.values():
            for listener in group:
                listener.wake()

    @contextmanager
    def listen(self, topic: str) -> Iterator[Listener]:
        listener = Listener()
        if self.closed:
            listener.wake()
        self._listeners.setdefault(topic, set()).add(listener)
        try:
            yield listener
        finally:
            group = self._listeners.get(topic)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[topic]

    def notify(self, topic: str, payload: object = None) -> None:
        """Wake listeners on ``topic``. An object ``payload`` (e.g. the finished job) reaches
        only this process's listeners, sparing them a read; a ``str`` payload also travels to
        other replicas (job ids to stop, say: comma-separated items, of any total length)."""
        self.dispatch(topic, payload)

    def dispatch(self, topic: str, payload: object = None) -> None:
        """Wake this process's listeners on ``topic``."""
        for listener in self._listeners.get(topic, ()):
            listener.wake(payload)

    async def start(self) -> None:
        """Hook for notifiers with a connection of their own."""

    async def stop(self) -> None:
        """Hook for notifiers with a connection of their own."""
