"""One SQLite connection owned by one thread, with group commit.

Callers hand it small functions. The thread takes every function waiting in its queue and runs
them in ONE transaction, each inside its own savepoint, then commits once. Under load this
turns hundreds of commits a second into a few, and the event loop never touches the database.

A database that cannot take a write now (another process holds the write lock past the busy
timeout, the disk is full, an I/O error, a read-only file: :func:`is_unavailable`) fails the
functions with :class:`errors.StoreUnavailable`, here and nowhere else. :attr:`outage` keeps
that failure (logged as one line now and then, never a traceback per request) until a write
commits again, so the health check can tell "reads work" from "writes work".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from anypod import errors
from anypod.store.base import Outage

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
_Item = tuple[Op, "asyncio.Future[Any]", asyncio.AbstractEventLoop, float]  # ..., when queued
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

log = logging.getLogger(__name__)
MAX_GROUP = 512
BUSY_TIMEOUT = 2.0
"""Seconds a call waits for another process's write lock before it fails (503). Our own
processes hold the lock for milliseconds at a time (group commit): 8 of them writing flat out
on one file (100 calls in flight each, 2 busy cores) waited 0.5 s at the longest."""
POLL_MS = 10  # SQLite's wait before the first retries of BEGIN: naps of 1, 2 and 5 ms
_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot take this now" (locked, full, I/O), not
    a bug in a statement or a constraint."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE


class SQLiteConnection:
    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = BUSY_TIMEOUT
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self.outage = Outage(f"SQLite database {path}")
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    @property
    def busy_timeout(self) -> float:
        return self._busy_timeout

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
        self._queue.put((op, future, loop, time.monotonic()))
        return await future

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout,  # SQLite's busy timeout, for every statement
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        # from here on the write lock is waited for in _begin (short naps, our own deadline);
        # inside a transaction nothing else waits (WAL: readers never block the writer)
        conn.execute(f"PRAGMA busy_timeout = {POLL_MS}")
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
        changes = conn.total_changes
        try:
            self._begin(conn, since=group[0][3])
            for op, future, _, _ in group:
                outcomes.append((future, *run(conn, op)))
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = self._group_failure(exc)
            outcomes = [(future, None, failure) for _, future, _, _ in group]
        else:
            outcomes = [(future, result, self._translated(e)) for future, result, e in outcomes]
            failed = any(isinstance(e, errors.StoreUnavailable) for _, _, e in outcomes)
            if not failed and conn.total_changes > changes:
                self.outage.recovered()  # a write committed: the database takes writes again
        _deliver(group, outcomes)

    def _begin(self, conn: sqlite3.Connection, *, since: float) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's write lock until the busy timeout
        has passed since ``since`` (when the oldest call of the group was made: calls queued
        behind a group that waited fail with it, not one busy timeout later).

        SQLite's own wait backs off to 100 ms naps, so against a busy writer that re-takes the
        lock at once it can lose every race for seconds; re-trying every few milliseconds
        keeps the longest wait short (measured in tests/store/test_sqlite_outage.py)."""
        deadline = since + self._busy_timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise

    def _group_failure(self, exc: Exception) -> errors.StoreUnavailable:
        if is_unavailable(exc):
            return self._unavailable(exc)
        log.exception("SQLite transaction failed")  # not a known outage: worth a traceback
        failure = errors.StoreUnavailable(f"SQLite transaction failed: {exc}")
        failure.__cause__ = exc
        return failure

    def _translated(self, exc: BaseException | None) -> BaseException | None:
        """An operation's own error, as callers get it: "unavailable" ones as StoreUnavailable."""
        return self._unavailable(exc) if exc is not None and is_unavailable(exc) else exc

    def _unavailable(self, exc: BaseException) -> errors.StoreUnavailable:
        failure = errors.StoreUnavailable(self.outage.failed(exc))
        failure.__cause__ = exc
        return failure


def _run_one(conn: sqlite3.Connection, op: Op) -> tuple[Any, BaseException | None]:
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        if not conn.in_transaction:  # SQLite rolled it all back (disk full, say): fail all
            raise
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
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, say)
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        return None, exc


def _deliver(group: list[_Item], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for (_, _, loop, _), outcome in zip(group, outcomes, strict=True):
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
