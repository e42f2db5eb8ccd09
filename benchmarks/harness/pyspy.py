"""py-spy profiles of running processes (``pip install py-spy``; the ``bench`` extra has it):
record one process per role for a fixed time, then shares of samples per function."""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.cpu import Roles


@dataclass(frozen=True)
class Options:
    seconds: float = 10.0
    rate: int = 100  # samples per second
    gil: bool = False  # only samples holding the GIL (what serialises a process)
    native: bool = False  # C frames too
    blocking: bool = False  # pause the process per sample (exact, but slows it a lot)


Recording = list[tuple[str, Path, "subprocess.Popen[bytes]"]]


def executable() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def record(roles: Roles, outdir: Path, tag: str, opts: Options) -> Recording:
    """Start ``py-spy record`` on the first pid of each role; raw stacks in ``outdir``."""
    exe = executable()
    if exe is None:
        print("  py-spy not found (pip install py-spy); no profile", flush=True)
        return []
    outdir.mkdir(parents=True, exist_ok=True)
    running: Recording = []
    for role, pids in roles.items():
        if not pids or role in ("other", "client"):
            continue
        raw = outdir / f"{tag}-{role}.txt"
        cmd = [exe, "record", "--pid", str(pids[0]), "--duration", str(int(opts.seconds))]
        cmd += ["--rate", str(opts.rate), "--function", "--format", "raw", "-o", str(raw)]
        flags = {"--nonblocking": not opts.blocking, "--native": opts.native, "--gil": opts.gil}
        cmd += [flag for flag, on in flags.items() if on]
        with (outdir / f"{tag}-{role}.log").open("wb") as log:
            popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        running.append((role, raw, popen))
    return running


def finish(running: Recording, opts: Options) -> dict[str, dict[str, Any]]:
    """Wait for the recordings; a summary per role that produced one."""
    out: dict[str, dict[str, Any]] = {}
    for role, raw, popen in running:
        try:
            popen.wait(opts.seconds + 30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        with contextlib.suppress(OSError):
            out[role] = summarize(raw, opts)
    return out


def _frame(frame: str) -> tuple[str, str]:
    """``func (path/to/file.py:12)`` -> (``pkg/file.py:func``, package)."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = path.split("site-packages/")[-1].split("/src/")[-1]
    if "/lib/python3" in short:
        short = "stdlib/" + short.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{short}:{func}", short.split("/")[0]


ENTRY_ROOTS = (
    "<frozen runpy>:",
    "<string>:",
    "threading.py:Thread._bootstrap",
    "multiprocessing/",
    "stdlib/",
)


def _stacks(raw: Path) -> list[tuple[list[tuple[str, str]], int]]:
    out = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        skip = ("process ", "thread ")
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(skip)]
        if count.isdigit() and frames:
            out.append((frames, int(count)))
    return out


def summarize(raw: Path, opts: Options, top: int = 20) -> dict[str, Any]:
    """Shares (%) of samples: self (leaf) per function and per package; inclusive per function
    (all, and anypod's), leaving out entry frames: those on >= 90% of the stacks that start at
    the same program or thread entry point."""
    own: collections.Counter[str] = collections.Counter()
    pkg: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    per_root: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    roots: collections.Counter[str] = collections.Counter()
    for frames, n in _stacks(raw):
        own[frames[-1][0]] += n
        pkg[frames[-1][1]] += n
        roots[frames[0][0]] += n
        for name in {name for name, _ in frames}:
            incl[name] += n
            per_root[frames[0][0]][name] += n
    entry = {
        f
        for r, c in per_root.items()
        if r.startswith(ENTRY_ROOTS)  # not a coroutine resumed by the (C) event loop
        for f, k in c.items()
        if k >= 0.9 * roots[r]
    }
    total = max(sum(roots.values()), 1)

    def shares(c: collections.Counter[str]) -> list[tuple[str, float]]:
        kept = [(k, v) for k, v in c.most_common() if k not in entry or c is own or c is pkg]
        return [(k, round(100 * v / total, 1)) for k, v in kept[:top]]

    mine = collections.Counter({k: v for k, v in incl.items() if k.startswith("anypod/")})
    return {
        "samples": sum(roots.values()),
        "busy_cores": round(sum(roots.values()) / max(opts.rate * opts.seconds, 1), 2),
        "self": shares(own),
        "self_by_package": shares(pkg),
        "inclusive": shares(incl),
        "anypod_inclusive": shares(mine),
    }


def show(role: str, prof: dict[str, Any]) -> None:
    print(f"\n  [{role}] {prof['samples']} samples (~{100 * prof['busy_cores']:.0f}% of a core)")
    print("    self by package: " + ", ".join(f"{k} {v}%" for k, v in prof["self_by_package"][:12]))
    for title, key, n in (("top self", "self", 12), ("top inclusive", "inclusive", 18),
                          ("anypod functions, inclusive", "anypod_inclusive", 10)):  # fmt: skip
        print(f"    {title}:")
        for k, v in prof[key][:n]:
            print(f"      {v:5.1f}%  {k}")
