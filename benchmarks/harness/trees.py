"""Comparing source trees in process-level benchmarks: a probe (Python code that prints one JSON
object of figures) runs in a fresh interpreter with a tree's ``src`` on ``PYTHONPATH``, round
after round, alternating between this checkout's tree and ``--baseline-src``; the figures'
medians per tree, and the ratio baseline / this tree."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import sut

Figures = dict[str, float]


def trees(baseline: Path | None) -> dict[str, Path]:
    """``this tree`` (what this process imports) and, if given, ``baseline``."""
    found = {"this tree": sut.imported_source()}
    if baseline is not None:
        found["baseline"] = baseline.resolve()
    return found


def probe(src: Path, code: str, args: Sequence[str], timeout: float = 600) -> Figures:
    """Run ``code`` with ``src`` first on the path; its last output line is the figures."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def alternate(
    found: dict[str, Path], rounds: int, code: str, args: Sequence[str]
) -> dict[str, list[Figures]]:
    """Each tree once per round, in turn, so that drift of the box hits every tree alike."""
    runs: dict[str, list[Figures]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, src in found.items():
            runs[name].append(probe(src, code, args))
    return runs


def medians(runs: dict[str, list[Figures]]) -> dict[str, Figures]:
    return {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
