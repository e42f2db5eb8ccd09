"""Log output of anypod's processes (server, workers): one format, quiet HTTP libraries, and
lines that nothing from a request can forge.

Every record is one line: :class:`SafeFormatter` escapes the control characters of whatever a
message holds (an id from a path, a worker's error text, an exception's message): a newline
becomes ``\\n``, ESC ``\\x1b``, NUL ``\\x00``, and so on for every C0 and C1 control and the
Unicode line separators and direction overrides. A traceback keeps its lines, each indented,
so a line that starts at the margin is always a record this process wrote.

A record written while a request is handled names that request (:data:`request_id`, which the
HTTP layer sets for the request's task); ``-`` otherwise.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("anypod_request_id", default="-")
"""The id of the request being handled (``-``: none); every log line carries it."""

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with its control characters written as escapes (one line, no terminal codes).
    Printable text, the usual case, is returned as is after one C-speed check."""
    if text.isprintable():
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _indented(text: str) -> str:
    return "\n".join("    " + escape(line) for line in text.splitlines())


class SafeFormatter(logging.Formatter):
    """One escaped line per record (plus an indented traceback), naming the current request."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape(self.formatMessage(record))
        if record.exc_info:
            line += "\n" + _indented(self.formatException(record.exc_info))
        elif record.exc_text:
            line += "\n" + _indented(record.exc_text)
        if record.stack_info:
            line += "\n" + _indented(self.formatStack(record.stack_info))
        return line


class Occasional:
    """An event counted, and logged at most once per ``every`` seconds with the count since the
    last line: a flood of slow or refused clients is a line now and then, not a flood of lines.
    ``message`` takes the count (``%d``)."""

    def __init__(self, message: str, *, every: float = 10.0, logger: str = "anypod.http") -> None:
        self.message, self.every = message, every
        self.log = logging.getLogger(logger)
        self.count = 0
        self.last = float("-inf")

    def note(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.log.warning(self.message, self.count)
            self.count, self.last = 0, now


def handler() -> logging.Handler:
    """A handler to stderr writing :data:`FORMAT` through :class:`SafeFormatter`."""
    found = logging.StreamHandler()
    found.setFormatter(SafeFormatter(FORMAT))
    return found


def configure(level: str) -> None:
    logging.basicConfig(level=level, handlers=[handler()])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # the store logs an outage once (store.base.Outage); asyncpg's pool would add a traceback
    # per reconnect attempt
    logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
