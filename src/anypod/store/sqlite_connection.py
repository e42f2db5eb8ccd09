"""One SQLite connection owned by one thread, with group commit.

Callers hand it small functions. The thread takes every function waiting in its queue and runs
them in ONE transaction, each inside its own savepoint, then commits once. Under load this
turns hundreds of commits a second into a few, and the event loop never touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from anypod import errors

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
_Item = tuple[Op, "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

log = logging.getLogger(__name__)
MAX_GROUP = 512


class SQLiteConnection:
    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="anypod-sqlite", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise errors.StoreUnavailable(f"cannot open {self._path}: {self._open_error}")

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise errors.StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((op, future, loop))
        return await future

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _main(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while (group := self._next_group()) is not None:
                self._run_group(conn, group)
        finally:
            conn.close()

    def _next_group(self) -> list[_Item] | None:
        first = self._queue.get()
        if first is None:
            return None
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            group.append(item)
        return group

    def _run_group(self, conn: sqlite3.Connection, group: list[_Item]) -> None:
        outcomes: list[_Outcome] = []
        run = _run_one if len(group) > 1 else _run_alone
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, future, _ in group:
                outcomes.append((future, *run(conn, op)))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("SQLite transaction failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = errors.StoreUnavailable(f"SQLite transaction failed: {exc}")
            outcomes = [(future, None, failure) for _, future, _ in group]
        _deliver(group, outcomes)


def _run_one(conn: sqlite3.Connection, op: Op) -> tuple[Any, BaseException | None]:
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return result, None


def _run_alone(conn: sqlite3.Connection, op: Op) -> tuple[Any, BaseException | None]:
    """A group of one needs no savepoint: on failure the whole transaction rolls back."""
    try:
        return op(conn), None
    except Exception as exc:
        conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        return None, exc


def _deliver(group: list[_Item], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for (_, _, loop), outcome in zip(group, outcomes, strict=True):
        by_loop.setdefault(loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the loop closed while we worked
            pass


def _resolve(items: list[_Outcome]) -> None:
    for future, result, exc in items:
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
