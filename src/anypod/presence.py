"""Which workers are there now, as this replica sees them: when each last asked for work and
when its held ``job-take`` hung up. ``/health`` adds what pings say; pure, in memory, bounded."""

from __future__ import annotations

from collections.abc import Iterable

MAX_WORKERS_NOTED = 10_000  # workers remembered per replica; the long quiet ones go first
Key = tuple[str, str]  # (endpoint, worker id)


class Presence:
    def __init__(self) -> None:
        self._taking: dict[Key, float] = {}  # → its last job-take
        self._hung_up: dict[Key, float] = {}  # → when its held job-take hung up

    def took(self, endpoint: str, worker_id: str, now: float, since: float) -> None:
        _note(self._taking, (endpoint, worker_id), now, since)

    def hung_up(self, endpoint: str, worker_id: str, now: float, since: float) -> None:
        _note(self._hung_up, (endpoint, worker_id), now, since)

    def live(self, endpoint: str, pinged: Iterable[tuple[str, float]], since: float) -> set[str]:
        """Of the workers that pinged (id, when) or asked for work since ``since``, those
        that have not hung up after."""
        active = dict(pinged)
        for (ep, worker), at in self._taking.items():
            if ep == endpoint and at >= since:
                active[worker] = max(active.get(worker, at), at)
        return {w for w, at in active.items() if self._hung_up.get((endpoint, w), 0.0) < at}


def _note(seen: dict[Key, float], key: Key, now: float, since: float) -> None:
    if len(seen) >= MAX_WORKERS_NOTED:
        for old in [k for k, at in seen.items() if at < since]:
            del seen[old]
        if len(seen) >= MAX_WORKERS_NOTED:
            seen.clear()
    seen[key] = now
