"""How fast a worker's handler process starts: on every worker start, crash and refresh.

    python -m benchmarks.child_start --baseline-src /tmp/old/src     # this tree vs an older one
    python -m benchmarks.child_start --runs 30

For each source tree (this one, and ``--baseline-src`` if given), a fresh interpreter with that
tree on ``PYTHONPATH`` measures, ``--runs`` times each and alternating trees round by round:
the import of ``anypod.worker.child`` (what ``spawn`` runs before the handler), and the time
from starting a :class:`anypod.worker.process.ChildProcess` until it reports ready, for a
plain handler (``def handler(job): ...``, no imports) and for a RunPod handler file
(``benchmarks/handlers/noop.py``, which imports ``runpod``, and with it aiohttp: there the
runpod SDK's own import dominates). Medians, and the ratio baseline / this tree.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.harness import report, sut, trees

PROBE = """
import asyncio, json, subprocess, sys, time
began = time.perf_counter()
import anypod.worker.child
imported = time.perf_counter() - began
from anypod.worker.process import ChildProcess

async def ready_s(handler: str) -> float:
    child = ChildProcess(handler, {}, 1, lambda c, e: None)
    began = time.perf_counter()
    await child.start()
    took = time.perf_counter() - began
    await child.stop(5)
    return took

figures = {"import_ms": imported * 1000}
for name, handler in zip(("plain_ms", "runpod_ms"), sys.argv[1:]):
    figures[name] = asyncio.run(ready_s(handler)) * 1000
print(json.dumps(figures))
"""
PLAIN = "def handler(job):\n    return {'ok': True}\n"
COLUMNS = {
    "import_ms": "import ms",
    "plain_ms": "ready ms, plain handler",
    "runpod_ms": "ready ms, RunPod handler",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--baseline-src", type=Path, help="an older tree's src/ to compare with")
    args = parser.parse_args()
    found = trees.trees(args.baseline_src)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.py"
        plain.write_text(PLAIN)
        runs = trees.alternate(found, args.runs, PROBE, [str(plain), sut.HANDLER])
    print(report.header(report.source_identity(found["this tree"]), runs=args.runs))
    medians = trees.medians(runs)
    rows = [
        [name, report.source_identity(found[name]), *(f"{m[key]:.0f}" for key in COLUMNS)]
        for name, m in medians.items()
    ]
    print(report.table(["tree", "source", *(f"{c} (p50)" for c in COLUMNS.values())], rows, 2))
    if "baseline" in medians:
        for key, column in COLUMNS.items():
            ratio = medians["baseline"][key] / medians["this tree"][key]
            print(f"{column}: baseline / this tree = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
