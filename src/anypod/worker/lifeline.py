"""Processes that die with their parent, so a killed ``anypod serve`` or ``anypod worker``
leaves no orphans behind: no worker taking jobs with a dead server's token, no handler holding
GPU memory. Standard library only (the handler child imports it)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when ``parent_pid`` (its parent) dies (Linux), and
    exit now if it already has. Elsewhere a pipe to the parent closing is the signal."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # gone before the request above took effect
        os._exit(1)


def leave_signals_to_parent() -> None:
    """Let SIGINT and SIGTERM pass: Ctrl-C in a terminal or systemd's stop signal reaches the
    whole process group, but a handler child must finish its job; its parent decides when it
    stops (and kills it after a grace). A handler that does nothing, not SIG_IGN: an ignored
    signal stays ignored in every program the handler starts (ffmpeg could not be stopped),
    while a handler is reset to the default by exec."""
    signal.signal(signal.SIGINT, _let_pass)
    signal.signal(signal.SIGTERM, _let_pass)


def _let_pass(signum: int, frame: object) -> None:
    """The parent owns this process's lifetime."""
