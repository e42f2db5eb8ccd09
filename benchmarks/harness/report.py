"""What a benchmark prints and writes: markdown tables, the machine and the source it ran,
verdicts against targets, a JSON file of every figure, and matplotlib figures."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def source_identity(src: Path) -> str:
    """``<git HEAD of the tree holding src>+src:<hash of its anypod/*.py>``: the tree may carry
    uncommitted edits, or be an older worktree given with ``--src``."""
    h = hashlib.sha256()
    package = src / "anypod"
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(src)).encode())
        h.update(path.read_bytes())
    head = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return f"{head or '?'}+src:{h.hexdigest()[:10]}"


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": round(os.getloadavg()[0], 2),
    }


def header(source: str, **extra: object) -> str:
    m = machine()
    parts = [f"python {m['python']}", f"{m['cores']} cores", m["platform"], f"source {source}"]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in extra.items()]
    return "; ".join(parts)


def load_avg() -> str:
    return f"load avg {os.getloadavg()[0]:.2f}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A padded markdown table; columns from index ``right`` on are right-aligned."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(c).rjust(w) if i >= right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    rule = [("-" * (w + 1) + ":") if i >= right else "-" * (w + 2) for i, w in enumerate(widths)]
    return "\n".join([line(head), "|" + "|".join(rule) + "|", *map(line, rows)])


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def loadavg() -> str:
    """``/proc/loadavg`` as it reads: 1, 5 and 15 min averages, runnable/total, last pid."""
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def write_json(path: Path, args: argparse.Namespace, source: str, **sections: object) -> None:
    """``sections`` plus the machine, the arguments, the source identity and the time."""
    doc = {
        "machine": machine(),
        "args": vars(args),
        "source": source,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **sections,
    }
    path.write_text(json.dumps(doc, indent=2, default=_jsonable))
    print(f"wrote {path}")


@contextlib.contextmanager
def figure(path: Path, ncols: int, title: str, size: tuple[float, float]) -> Iterator[list[Any]]:
    """``with figure(path, 2, title, (11, 4)) as (left, right):`` draw, then it is saved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, squeeze=False)
    yield list(axes[0])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
