"""How many connections the server keeps open, so that it keeps answering when clients would
hold more than it can.

Every open connection costs a file descriptor. When a process has none left, ``accept()``
fails: uvloop (libuv) then accepts and drops connections (resets), asyncio stops accepting for
a second at a time, and the store, the worker pipes and the log cannot open files either.
(uvicorn's ``limit_concurrency`` does not help: past it, every request gets a plain-text 503,
``/health`` included, and held long-polls count against it like any other.) So:

- at start the soft limit on open files is raised to the hard one
  (:func:`raise_open_file_limit`);
- the server keeps at most ``max_connections`` open: by default the open-file limit less a
  reserve for everything else the process opens (:func:`caps`). A connection past the cap is
  answered 503 at once and closed (:mod:`anypod.http.protocol`);
- from ``crowded_at`` (the cap less a share kept for short requests) the requests that would
  hold their connection while they wait (``/runsync``, ``/status-sync``, ``/stream``:
  :func:`holds`) are refused with 503 and ``Retry-After``, so that ``/health``, ``/run``,
  ``/status`` and the worker protocol are still answered. A worker's ``job-take`` holds too but
  is never refused: workers are few, and without them no held request would ever end.
"""

from __future__ import annotations

import logging
import resource

from anypod.http.routing import Route
from anypod.protocols.runpod import paths

log = logging.getLogger(__name__)

CROWDED = "anypod.crowded"
"""Scope key the connection sets when the server was crowded as the request came."""

_HOLDING = frozenset({paths.RUNSYNC, paths.STATUS_SYNC, paths.STREAM})
_MOST_FILES = 1 << 20  # what the soft limit is raised to at most


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (at most 2**20); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _MOST_FILES if hard == resource.RLIM_INFINITY else min(hard, _MOST_FILES)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.info("open-file limit left at %d: %s", soft, exc)
        return soft
    return target


def open_file_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _MOST_FILES if soft == resource.RLIM_INFINITY else soft


def caps(max_connections: int, files: int | None = None) -> tuple[int, int]:
    """``(max_connections, crowded_at)``. ``max_connections`` <= 0: the open-file limit
    (``files``, default the process's) less a reserve of an eighth (at least 32, at most 1,024)
    for the store, worker pipes, logs and the like. ``crowded_at``: an eighth less (at least
    4), kept for requests that do not hold."""
    if max_connections <= 0:
        files = open_file_limit() if files is None else files
        max_connections = max(16, files - max(32, min(files // 8, 1024)))
    return max_connections, max_connections - max(4, max_connections // 8)


def holds(route: Route) -> bool:
    """Whether ``route`` keeps its connection while it waits on the server (refused when
    crowded)."""
    return route.path in _HOLDING
