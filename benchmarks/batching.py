#!/usr/bin/env python
"""Dynamic batching: the embeddings endpoint under load, per max batch size, next to the model.

    python benchmarks/batching.py                         # full run (~4 min; --trials 5: ~8)
    python benchmarks/batching.py --quick                 # smoke run (~1 min)
    python benchmarks/batching.py --json out.json --png docs/img/batching.png
    python benchmarks/batching.py --profile /tmp/prof     # also py-spy the largest size

anypod: for each max batch size N (``--sizes``), a fresh ``python -m anypod serve
examples/embeddings/handler.py --endpoint embeddings --workers 1`` with ``BATCH_SIZE=N`` and
``BATCH_TIMEOUT_MS=--wait-ms``. ``--clients`` closed-loop clients share one aiohttp
``ClientSession`` (keep-alive); each sends one sentence per job with ``POST
/v2/embeddings/runsync`` and, as soon as the answer comes, the next. After ``--warmup`` seconds
the next ``--seconds`` are measured: jobs/s = jobs answered in the window / window, latency =
request .. answer of those jobs. The handler reports how many jobs shared each model call, so
the table shows the batch sizes actually formed.

direct: the same ``encode()`` of the same handler file, called back to back in a separate
process (no server, no worker) with exactly N sentences per call: the ceiling for batch size N.

Each size runs pairs of equal windows (direct, then anypod, never at the same time) until
``--trials`` pairs were quiet: other processes on the machine (CPU time of the whole machine from
/proc/stat, less ours) used at most ``--max-foreign`` cores in both windows. It gives up after
4 x ``--trials`` pairs and keeps the quietest. The table shows the median kept trial of each
(``--pick best``: the best); every kept trial's figures and disturbance are in the JSON.
Both read ``EMBEDDINGS_THREADS`` (``--threads``; default: the handler's own default, every CPU).
CPU seconds per process (server, worker parent, handler child, this client) come from /proc.
Every subprocess runs in its own session and is stopped with SIGTERM, then SIGKILL (its whole
group), on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from throughput import cmdline, cpu_seconds  # same folder: the /proc helpers live there

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "examples" / "embeddings" / "handler.py"
ENDPOINT = "embeddings"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
TICK = os.sysconf("SC_CLK_TCK")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
TARGET_VS_UNBATCHED, TARGET_VS_DIRECT = 3.0, 0.80
PROFILE_RATE = 200  # py-spy samples per second

# ----------------------------------------------------------------------------- sentences

SUBJECTS = (
    "The new support engineer|A tired delivery driver|Our quarterly revenue report|"
    "The small bakery on the corner|A group of curious students|The city council|"
    "My neighbour's old golden retriever|The open source community|A sudden summer storm|"
    "The hospital's night shift|The football team's young goalkeeper|A local farmer"
).split("|")
VERBS = (
    "quietly explained|carefully reviewed|unexpectedly changed|proudly presented|"
    "patiently waited for|accidentally deleted|strongly criticised|happily shared|"
    "slowly rebuilt|briefly discussed|finally approved|loudly celebrated"
).split("|")
OBJECTS = (
    "the updated train timetable|a recipe for spicy lentil soup|"
    "the broken office printer|a long list of customer complaints|"
    "the plan for a new cycling lane|the results of the chemistry experiment|"
    "a fresh batch of sourdough bread|the budget for next year's festival|"
    "an old photograph of the harbour|the security patch for the database server"
).split("|")
ENDINGS = (
    "before the meeting started|after a very long week|during the morning rush hour|"
    "in front of the whole school|while the rain kept falling outside|"
    "without telling anyone in advance|at the end of the season|"
    "on a quiet Sunday afternoon|near the old railway station"
).split("|")


def sentences(n: int, seed: int = 7) -> list[str]:
    """``n`` varied, realistic sentences of 13-22 words (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]
        out.append(" ".join(p for p in parts if p) + ".")
    return out


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError):
                    kids += map(
                        int, Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                    )
        out += kids
        todo += kids
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICK


class Served:
    """``anypod serve`` in its own session; :meth:`stop` ends it and everything it started."""

    live: list[Served] = []

    def __init__(self, size: int, args: argparse.Namespace, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / f"serve-batch{size}.log"
        argv = [
            sys.executable, "-m", "anypod", "serve", str(HANDLER), "--endpoint", ENDPOINT,
            "--port", str(self.port), "--workers", "1",
            "--database", f"sqlite:///{workdir / f'batch{size}.db'}",
        ]  # fmt: skip
        env = {**os.environ, **OFFLINE, **handler_env(args)}
        env |= {"BATCH_SIZE": str(size), "BATCH_TIMEOUT_MS": str(args.wait_ms)}
        env.setdefault("ANYPOD_LOG_LEVEL", "WARNING")
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        Served.live.append(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def roles(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"server": [self.popen.pid], "worker": [], "handler": []}
        for pid in descendants(self.popen.pid):
            cmd = cmdline(pid)
            if " anypod worker " in f" {cmd} ":
                out["worker"].append(pid)
            elif "spawn_main" in cmd and "resource_tracker" not in cmd:
                out["handler"].append(pid)
        return out

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, grace: float = 10.0) -> None:
        family = [self.popen.pid, *descendants(self.popen.pid)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in family[1:]:  # anything that left the group but is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()
        if self in Served.live:
            Served.live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for served in list(cls.live):
            served.stop(grace=5.0)


def handler_env(args: argparse.Namespace) -> dict[str, str]:
    return {} if args.threads is None else {"EMBEDDINGS_THREADS": str(args.threads)}


# ----------------------------------------------------------------------------- stats


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# ----------------------------------------------------------------------------- load


@dataclass
class Load:
    """What the clients saw; ``done`` holds (sent, answered, jobs in its model call)."""

    done: list[tuple[float, float, int]] = field(default_factory=list)
    bad: collections.Counter[str] = field(default_factory=collections.Counter)


async def one_job(session: Any, base: str, text: str, load: Load) -> None:
    import orjson

    t0 = time.perf_counter()
    payload = orjson.dumps({"input": {"text": text}})
    headers = {"Content-Type": "application/json"}
    async with session.post(f"{base}/runsync?wait=60000", data=payload, headers=headers) as r:
        reply = orjson.loads(await r.read())
    while reply.get("status") not in TERMINAL and "id" in reply:  # runsync gave up waiting
        async with session.get(f"{base}/status-sync/{reply['id']}?wait=60000") as r:
            reply = orjson.loads(await r.read())
    if reply.get("status") != "COMPLETED":
        load.bad[str(reply.get("status") or reply.get("error"))] += 1
        return
    load.done.append((t0, time.perf_counter(), int(reply["output"]["batch_size"])))


async def drive(url: str, texts: list[str], clients: int, until: float) -> Load:
    """``clients`` closed-loop clients, one sentence per job, until ``until`` (perf_counter)."""
    import aiohttp

    load = Load()
    base = f"{url}/v2/{ENDPOINT}"
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.perf_counter() < until:
                i = next(counter)
                try:
                    await one_job(session, base, texts[i % len(texts)], load)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    load.bad[type(exc).__name__] += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return load


def window_stats(load: Load, start: float, end: float) -> dict[str, Any]:
    """Jobs answered in [start, end): jobs/s, latency percentiles, batch sizes formed."""
    inside = [(t0, t1, b) for t0, t1, b in load.done if start <= t1 < end]
    lat = sorted((t1 - t0) * 1000 for t0, t1, _ in inside)
    sizes = [b for _, _, b in inside]
    return {
        "jobs": len(inside),
        "jobs_s": len(inside) / (end - start),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "mean_batch": sum(sizes) / len(sizes) if sizes else 0.0,
        "max_batch": max(sizes, default=0),
        "failed": sum(load.bad.values()),
        "failures": dict(load.bad),
    }


def wait_ready(served: Served, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.popen.poll() is not None:
            raise RuntimeError(f"anypod serve exited:\n{served.tail()}")
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{served.url}/health", timeout=1) as r:
                if json.loads(r.read()).get("workers", 0) >= 1:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"no worker after {timeout}s:\n{served.tail()}")


# ----------------------------------------------------------------------------- profiling


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start_profiles(
    roles: dict[str, list[int]], outdir: Path, seconds: float
) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    exe = py_spy()
    if exe is None:
        print("  py-spy not found; skipping the profile", flush=True)
        return []
    running = []
    for role in ("server", "worker", "handler"):
        for pid in roles.get(role, [])[:1]:
            raw = outdir / f"{role}.txt"
            cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                   "--rate", str(PROFILE_RATE), "--format", "raw", "--output", str(raw),
                   "--nonblocking"]  # fmt: skip
            log = (outdir / f"{role}.log").open("wb")
            running.append((role, raw, subprocess.Popen(cmd, stdout=log, stderr=log)))
    return running


def summarize_profile(raw: Path, seconds: float, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's collapsed stacks (idle excluded).

    ``busy`` is active samples per wall second over the rate, summed over threads; frames on
    (almost) every stack, the entry-point chain, are left out of ``inclusive``."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            incl[frame] += int(count)
    scale = 100 / max(total, 1)
    return {
        "samples": total,
        "busy": round(total / (PROFILE_RATE * seconds), 2),
        "self": [(f, round(k * scale, 1)) for f, k in own.most_common(top)],
        "inclusive": [(f, round(k * scale, 1)) for f, k in incl.most_common() if k < 0.9 * total][
            :top
        ],
    }


def _frame(frame: str) -> str:
    """``Class.method (path/to/file.py:12)`` -> ``Class.method file.py``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.split(':')[0].rsplit('/', 1)[-1]}"


# ----------------------------------------------------------------------------- phases


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def anypod_window(
    served: Served, args: argparse.Namespace, texts: list[str], profile: Path | None = None
) -> dict[str, Any]:
    """Load the endpoint for ``--warmup`` + ``--seconds``; figures of the last ``--seconds``."""
    roles = served.roles()
    start = time.perf_counter() + args.warmup
    end = start + args.seconds
    loop = new_loop()
    try:
        task = loop.create_task(drive(served.url, texts, args.clients, end))
        loop.run_until_complete(asyncio.sleep(max(0.0, start - time.perf_counter())))
        cpu0 = {r: sum(map(cpu_seconds, p)) for r, p in roles.items()}
        client0, busy0 = time.process_time(), machine_busy()
        profiles = start_profiles(roles, profile, args.seconds) if profile else []
        loop.run_until_complete(asyncio.sleep(max(0.0, end - time.perf_counter())))
        cpu1 = {r: sum(map(cpu_seconds, p)) for r, p in roles.items()}
        client1, busy1 = time.process_time(), machine_busy()
        load = loop.run_until_complete(task)
    finally:
        loop.close()
    stats = window_stats(load, start, end)
    stats["cpu_s"] = {r: round(cpu1[r] - cpu0[r], 2) for r in roles}
    stats["cpu_s"]["client"] = round(client1 - client0, 2)
    ours = sum(stats["cpu_s"].values())
    stats["foreign_cores"] = round(max(0.0, busy1 - busy0 - ours) / args.seconds, 2)
    stats["profile"] = {
        role: summarize_profile(raw, args.seconds) for role, raw, p in profiles if p.wait(60) == 0
    }
    return stats


def measure_size(
    size: int, args: argparse.Namespace, texts: list[str], workdir: Path, direct: Direct
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--trials`` quiet pairs of (direct window, anypod window) for one size."""
    served = Served(size, args, workdir)
    try:
        wait_ready(served)
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for _ in range(args.trials * 4):
            pair = direct.measure(size, args.direct_seconds), anypod_window(served, args, texts)
            pairs.append(pair)
            if sum(disturbance(p) <= args.max_foreign for p in pairs) >= args.trials:
                break
            if disturbance(pair) > args.max_foreign:
                print(f"  disturbed: other processes used {disturbance(pair):.2f} cores; again")
                time.sleep(5)
        if args.profile and size == args.profile_size:  # an extra window, not in the figures
            profiled = anypod_window(served, args, texts, Path(args.profile))
    finally:
        served.stop()
    kept = sorted(pairs, key=disturbance)[: args.trials]  # the quietest, in time order
    kept = [p for p in pairs if p in kept]
    chosen_direct = pick((d for d, _ in kept), "sent_s", args.pick)
    chosen = pick((a for _, a in kept), "jobs_s", args.pick)
    chosen_direct["trials_sent_s"] = [round(d["sent_s"], 1) for d, _ in kept]
    chosen["trials_jobs_s"] = [round(a["jobs_s"], 1) for _, a in kept]
    chosen["trials_foreign_cores"] = [disturbance(p) for p in kept]
    chosen["discarded_trials"] = len(pairs) - len(kept)
    chosen["profile"] = profiled["profile"] if args.profile and size == args.profile_size else {}
    return chosen, chosen_direct


def disturbance(pair: tuple[dict[str, Any], dict[str, Any]]) -> float:
    """Cores other processes on the machine used during a pair's windows (the larger)."""
    return float(max(pair[0]["foreign_cores"], pair[1]["foreign_cores"]))


def pick(trials: Iterable[dict[str, Any]], key: str, how: str) -> dict[str, Any]:
    """The trial with the median (lower median) or the best ``key``."""
    ranked = sorted(trials, key=lambda t: t[key])
    return dict(ranked[-1] if how == "best" else ranked[(len(ranked) - 1) // 2])


class Direct:
    """A process with the handler file's ``encode()`` loaded (its environment, no server),
    measuring one batch size per request; it sleeps on stdin while anypod is measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        env = {**os.environ, **OFFLINE, **handler_env(args)}
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--direct-phase"], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        if self._line() != "ready":
            raise RuntimeError("direct process failed to load the model")

    def _line(self) -> str:
        assert self.popen.stdout is not None
        return self.popen.stdout.readline().strip()

    def measure(self, size: int, seconds: float) -> dict[str, Any]:
        assert self.popen.stdin is not None
        wall0, busy0, own0 = time.perf_counter(), machine_busy(), cpu_seconds(self.popen.pid)
        self.popen.stdin.write(f"{size} {seconds}\n")
        self.popen.stdin.flush()
        result: dict[str, Any] = json.loads(self._line())
        foreign = machine_busy() - busy0 - (cpu_seconds(self.popen.pid) - own0)
        result["foreign_cores"] = round(max(0.0, foreign) / (time.perf_counter() - wall0), 2)
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.popen.stdin is not None:
                self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def direct_phase() -> None:
    """(in the direct process) per stdin line ``N SECONDS``: ``encode()`` N sentences per call,
    back to back, for SECONDS; one JSON line out."""
    spec = importlib.util.spec_from_file_location("embeddings_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.get_model()
    texts = sentences(4096, seed=11)
    print("ready", flush=True)
    for line in sys.stdin:
        size, seconds = int(line.split()[0]), float(line.split()[1])
        for i in range(3):  # warm-up
            module.encode(texts[i * size : (i + 1) * size])
        calls: list[float] = []
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            offset = (len(calls) * size) % (len(texts) - size)
            t0 = time.perf_counter()
            module.encode(texts[offset : offset + size])
            calls.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - begin
        calls.sort()
        figures = {"sent_s": len(calls) * size / elapsed, "call_p50_ms": pct(calls, 0.5)}
        print(json.dumps(figures | {"call_p99_ms": pct(calls, 0.99)}), flush=True)


# ----------------------------------------------------------------------------- report


def table(rows: dict[int, dict[str, Any]], direct: dict[str, dict[str, float]]) -> str:
    base = rows[min(rows)]["jobs_s"] or float("nan")
    head = (
        "| max batch | anypod jobs/s | p50 ms | p99 ms | mean batch formed | direct sent./s "
        "| vs batch 1 | vs direct |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for size, r in sorted(rows.items()):
        d = direct[str(size)]["sent_s"]
        lines.append(
            f"| {size} | {r['jobs_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
            f"| {r['mean_batch']:.1f} | {d:.1f} | {r['jobs_s'] / base:.2f}x "
            f"| {100 * r['jobs_s'] / d:.0f}% |"
        )
    return "\n".join(lines)


def verdict(rows: dict[int, dict[str, Any]], direct: dict[str, dict[str, float]]) -> str:
    best = max(rows, key=lambda s: rows[s]["jobs_s"])
    speedup = rows[best]["jobs_s"] / rows[min(rows)]["jobs_s"]
    of_direct = rows[best]["jobs_s"] / direct[str(best)]["sent_s"]
    ok = {True: "met", False: "MISSED"}
    return (
        f"best: max batch {best}: {speedup:.2f}x batch 1 (target >= {TARGET_VS_UNBATCHED:.0f}x: "
        f"{ok[speedup >= TARGET_VS_UNBATCHED]}), {100 * of_direct:.0f}% of direct "
        f"(target >= {100 * TARGET_VS_DIRECT:.0f}%: {ok[of_direct >= TARGET_VS_DIRECT]})"
    )


def plot(rows: dict[int, dict[str, Any]], direct: dict[str, dict[str, float]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(sizes, [rows[s]["jobs_s"] for s in sizes], "o-", label="anypod (64 clients, HTTP)")
    left.plot(sizes, [direct[str(s)]["sent_s"] for s in sizes], "s--", label="direct encode()")
    left.set(title="Throughput", xlabel="max batch size", ylabel="sentences / s")
    right.plot(sizes, [rows[s]["p50_ms"] for s in sizes], "o-", label="anypod p50")
    right.plot(sizes, [rows[s]["p99_ms"] for s in sizes], "o:", label="anypod p99")
    right.plot(
        sizes, [direct[str(s)]["call_p50_ms"] for s in sizes], "s--", label="direct call p50"
    )
    right.set(title="Latency per job", xlabel="max batch size", ylabel="ms", yscale="log")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("all-MiniLM-L6-v2 embeddings, one worker, CPU torch, 2 cores")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def print_profiles(rows: dict[int, dict[str, Any]]) -> None:
    for size, r in sorted(rows.items()):
        for role, prof in r.get("profile", {}).items():
            print(f"\nprofile, max batch {size}, {role} (busy {prof['busy']:.0%} of a core):")
            print("  self:      " + "; ".join(f"{f} {p}%" for f, p in prof["self"][:8]))
            print("  inclusive: " + "; ".join(f"{f} {p}%" for f, p in prof["inclusive"][:8]))


def machine() -> str:
    import torch

    cpus = len(os.sched_getaffinity(0))
    return (
        f"{platform.processor() or platform.machine()}, {cpus} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, load avg "
        f"{os.getloadavg()[0]:.2f} at start"
    )


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,2,4,8,16,32", help="max batch sizes, comma-separated")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=4.0, help="measured window per trial")
    p.add_argument("--warmup", type=float, default=2.0, help="load before each window")
    p.add_argument("--direct-seconds", type=float, default=4.0, help="direct window per trial")
    p.add_argument("--trials", type=int, default=3, help="quiet window pairs per size")
    p.add_argument("--pick", choices=["median", "best"], default="median", help="which trial")
    p.add_argument(
        "--max-foreign", type=float, default=0.15, help="a trial is quiet if other processes "
        "used at most this many cores; up to 4x --trials are run to find --trials quiet ones",
    )  # fmt: skip
    p.add_argument("--wait-ms", type=float, default=15.0, help="BATCH_TIMEOUT_MS")
    p.add_argument("--threads", type=int, default=None, help="EMBEDDINGS_THREADS for both")
    p.add_argument("--quick", action="store_true", help="short windows, sizes 1,8,32")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--png", type=Path, help="write the plot here (e.g. docs/img/batching.png)")
    p.add_argument("--profile", help="py-spy server, worker, handler at --profile-size into DIR")
    p.add_argument("--profile-size", type=int, default=None, help="default: the largest size")
    p.add_argument("--direct-phase", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.warmup, args.direct_seconds = "1,8,32", 4.0, 2.0, 2.0
        args.trials = 1
    args.warmup = max(args.warmup, 1.0)
    return args


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.direct_phase:
        direct_phase()
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        args.profile_size = args.profile_size or max(sizes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {machine()}", flush=True)
    texts = sentences(4096)
    rows: dict[int, dict[str, Any]] = {}
    direct: dict[str, dict[str, Any]] = {}
    runner = Direct(args)
    try:
        with tempfile.TemporaryDirectory(prefix="anypod-batching-") as tmp:
            for size in sizes:
                rows[size], direct[str(size)] = measure_size(size, args, texts, Path(tmp), runner)
                r, d = rows[size], direct[str(size)]
                print(
                    f"max batch {size}: direct {d['sent_s']:.1f} sent./s {d['trials_sent_s']}; "
                    f"anypod {r['jobs_s']:.1f} jobs/s {r['trials_jobs_s']}  p50 {r['p50_ms']:.0f}"
                    f" ms  p99 {r['p99_ms']:.0f} ms  mean batch {r['mean_batch']:.1f}  failed "
                    f"{r['failed']}  cpu {r['cpu_s']}  others {r['trials_foreign_cores']} cores",
                    flush=True,
                )
    finally:
        runner.stop()
        Served.stop_all()
    print("\n" + table(rows, direct) + "\n\n" + verdict(rows, direct))
    print_profiles(rows)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "anypod": rows, "direct": direct},
                                        indent=1, default=str))  # fmt: skip
    if args.png:
        plot(rows, direct, args.png)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
