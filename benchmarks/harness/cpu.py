"""CPU accounting from /proc: what each role (server, worker parents, handler children, the
client, ...) spent during a phase, and what every other process on the machine spent meanwhile.

    with cpu.Meter(lambda: {"server": [pid], "worker": worker_pids}) as meter:
        ...  # the phase
    print(meter.usage.line(jobs))   # CPU ms per job per role, ours in cores, others in cores
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from benchmarks.harness import procs

TICK = os.sysconf("SC_CLK_TCK")
Roles = dict[str, list[int]]


def seconds(pid: int) -> float:
    """utime + stime of one process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_seconds(pid: int) -> float:
    """A process and its live descendants."""
    return sum(map(seconds, [pid, *procs.descendants(pid)]))


def client_seconds() -> float:
    """This process: the benchmark's own client / load generator."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process, every core) since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(v) - v[3] - v[4]) / TICK  # all but idle and iowait


@dataclass
class Usage:
    """CPU seconds per role over ``wall`` seconds; ``others``: every other process."""

    wall: float = 0.0
    roles: dict[str, float] = field(default_factory=dict)
    others: float = 0.0

    def ours(self) -> float:
        return sum(self.roles.values())

    def ms_per_job(self, jobs: int) -> dict[str, float]:
        return {k: 1000 * v / max(jobs, 1) for k, v in self.roles.items()}

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.wall if self.wall else 0.0

    def line(self, jobs: int) -> str:
        """``server 0.62, worker 0.30, ... | ours 1.46 ms/job = 1.2 cores; others 0.1 cores``"""
        per_job = self.ms_per_job(jobs)
        per = ", ".join(f"{k} {v:.2f}" for k, v in per_job.items() if k != "other" or v >= 0.05)
        return (
            f"{per} | ours {1000 * self.ours() / max(jobs, 1):.2f} ms/job = "
            f"{self.cores(self.ours()):.2f} cores; other processes "
            f"{self.cores(self.others):.2f} cores (of {os.cpu_count()})"
        )


class Meter:
    """Measures a ``with`` block. ``roles`` is called on entry and on exit: a pid seen only on
    exit (started during the block) counts with all its CPU. ``client`` adds this process."""

    def __init__(self, roles: Callable[[], Roles], client: bool = True) -> None:
        self._roles, self._client = roles, client
        self.usage = Usage()

    def __enter__(self) -> Meter:
        self._before_roles = self._roles()
        self._before = {p: seconds(p) for pids in self._before_roles.values() for p in pids}
        self._own, self._busy, self._t0 = client_seconds(), machine_busy(), time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wall = time.perf_counter() - self._t0
        after = self._roles()
        used: dict[str, float] = {}
        for role in {**self._before_roles, **after}:
            pids = {*self._before_roles.get(role, []), *after.get(role, [])}
            if pids:
                used[role] = sum(max(seconds(p) - self._before.get(p, 0.0), 0.0) for p in pids)
        if self._client:
            used["client"] = client_seconds() - self._own
        others = max(machine_busy() - self._busy - sum(used.values()), 0.0)
        self.usage = Usage(wall, used, others)
