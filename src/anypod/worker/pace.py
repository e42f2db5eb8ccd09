"""How fast the handler's jobs go, which decides how many jobs a worker holds beyond what it
runs (prefetch). Pure: the worker feeds it run times and result round trips."""

from __future__ import annotations

SHORT_JOB = 0.05  # seconds: prefetch holds at most this much work beyond what runs
MAX_PREFETCH = 256  # jobs held beyond what runs, however short they are


class Pace:
    """How long the handler's jobs take, and a result's round trip to the server, lately
    (exponential averages).

    A worker holds jobs beyond what it runs only while jobs are short (under ``SHORT_JOB`` on
    average), and only enough to cover ``SHORT_JOB`` or two round trips, whichever is longer:
    then the next job is ready the moment one ends, and the server's answer (slow under load)
    leaves the critical path. Long jobs are never held back from other workers (prefetch
    would hoard them)."""

    def __init__(self) -> None:
        self.average: float | None = None  # unknown until a job has run: assume long
        self.round_trip = 0.0

    def ran(self, seconds: float) -> None:
        self.average = _ewma(self.average, seconds)

    def overran(self, seconds: float) -> None:
        """A job has run ``seconds`` and is not done: jobs are long now."""
        self.average = max(self.average or 0.0, seconds)

    def posted(self, seconds: float) -> None:
        self.round_trip = _ewma(self.round_trip or None, seconds)

    @property
    def short(self) -> bool:
        return self.average is not None and self.average < SHORT_JOB

    @property
    def prefetch(self) -> int:
        """Jobs worth holding beyond what runs."""
        if self.average is None or not self.short:
            return 0
        cover = max(SHORT_JOB, 2 * self.round_trip)
        return max(1, min(MAX_PREFETCH, int(cover / max(self.average, 1e-6))))


def _ewma(average: float | None, sample: float) -> float:
    return sample if average is None else 0.8 * average + 0.2 * sample
