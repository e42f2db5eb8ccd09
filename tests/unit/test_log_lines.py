"""Nothing a message holds can forge a log line (issue 9): control characters are escaped, a
traceback's lines are indented, so every line at the margin is a record the process wrote.
And a flood of one event is a line now and then (:class:`logs.Occasional`)."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from anypod import logs

FORGED = "2026-01-01 00:00:00,000 CRITICAL anypod [-]: forged"
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ \[\S+\]: ")


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    found = io.StringIO()
    handler = logging.StreamHandler(found)
    handler.setFormatter(logs.SafeFormatter(logs.FORMAT))
    logger = logging.getLogger("anypod.test.lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\x00", "\\x00"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),  # NEL, a C1 line break
        ("\u2028", "\\u2028"),
        ("\u202e", "\\u202e"),  # right-to-left override
        ("caf\u00e9 \U0001f600", "caf\u00e9 \U0001f600"),  # printable: kept
    ],
)
def test_control_characters_are_escaped(out: io.StringIO, raw: str, shown: str) -> None:
    logging.getLogger("anypod.test.lines").warning("job %s done", f"a{raw}b")
    (line,) = lines(out)
    assert RECORD.match(line) and line.endswith(f"job a{shown}b done"), line


def test_a_forged_line_in_any_part_of_a_record_stays_on_its_line(out: io.StringIO) -> None:
    log = logging.getLogger("anypod.test.lines")
    log.warning("worker %s lapsed", f"w1\n{FORGED}")
    log.warning(f"an f-string too: \r\n{FORGED}")
    try:
        raise ValueError(f"bad input\n{FORGED}")
    except ValueError:
        log.exception("failed on %s", f"x\n{FORGED}")
    found = lines(out)
    assert not [ln for ln in found if ln.startswith(FORGED)], found
    assert all(RECORD.match(ln) or ln.startswith("    ") for ln in found), found
    assert sum(bool(RECORD.match(ln)) for ln in found) == 3
    assert any(ln.startswith("    Traceback") for ln in found)
    assert any(ln.strip() == FORGED for ln in found)  # the message is kept, indented


def test_lines_name_the_current_request(out: io.StringIO) -> None:
    log = logging.getLogger("anypod.test.lines")
    log.warning("outside")
    token = logs.request_id.set("req-7")
    try:
        log.warning("inside")
    finally:
        logs.request_id.reset(token)
    outside, inside = lines(out)
    assert " [-]: outside" in outside and " [req-7]: inside" in inside


def test_an_occasional_event_is_logged_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    tally = logs.Occasional("closed %d", every=3600, logger="anypod.test.occasional")
    for _ in range(500):
        tally.note()
    assert [r.getMessage() for r in caplog.records] == ["closed 1"]
    tally.last -= 3600
    tally.note()
    assert [r.getMessage() for r in caplog.records] == ["closed 1", "closed 500"]
