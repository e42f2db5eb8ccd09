"""``make demo``: transcribe the bundled speech clip through anypod's HTTP API.

Starts ``anypod serve examples/whisper/whisper.py`` (API + one worker, SQLite in a temp dir),
submits the clip as a RunPod-style job, shows progress while it runs, prints the transcript and
where the time went, then runs it twice more warm through ``/runsync``.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from anypod import Client

HERE = Path(__file__).resolve().parent
CLIP = HERE / "speech.wav"
ENDPOINT = "whisper"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, workdir: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "anypod",
        "serve",
        str(HERE / "whisper.py"),
        "--port",
        str(port),
        "--database",
        f"sqlite:///{workdir}/demo.db",
    ]
    env = {**os.environ, "ANYPOD_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    log = open(Path(workdir) / "server.log", "wb")
    return subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_ready(client: Client, url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"anypod exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).json().get("workers", 0) >= 1:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("anypod did not become ready in 120 s")


def bar(fraction: float, width: int = 30) -> str:
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction:5.1%}"


def run_with_progress(client: Client, audio: str) -> dict[str, Any]:
    job = client.run(ENDPOINT, {"audio": audio, "language": "en"})
    while True:
        status = client.status(ENDPOINT, job["id"])
        output = status.get("output")
        if status["status"] == "IN_PROGRESS" and isinstance(output, dict):
            print(
                f"\r  {bar(float(output.get('fraction', 0)))}  "
                f"{output.get('segments_done', 0)} segment(s) ",
                end="",
                flush=True,
            )
        if status["status"] not in ("IN_QUEUE", "IN_PROGRESS"):
            print(f"\r  {bar(1.0)}" + " " * 24)
            return status
        time.sleep(0.05)


def report(label: str, status: dict[str, Any], wall: float) -> dict[str, Any]:
    if status["status"] != "COMPLETED":
        raise SystemExit(f"{label}: job {status['status']}: {status.get('error')}")
    result: dict[str, Any] = status["output"][0]
    print(
        f"{label}: wall {wall * 1000:7.0f} ms | queued {status['delayTime']:5d} ms | "
        f"executing {status['executionTime']:5d} ms | audio {result['duration']:.1f} s"
    )
    return result


def main() -> None:
    audio = base64.b64encode(CLIP.read_bytes()).decode()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir:
        started = time.monotonic()
        proc = start_server(port, workdir)
        try:
            with Client(url) as client:
                wait_ready(client, url, proc)
                print(
                    f"anypod up at {url} with 1 Whisper worker "
                    f"({time.monotonic() - started:.1f} s)\n"
                )
                print(f"Transcribing {CLIP.name} (POST /v2/{ENDPOINT}/run, polling /status):")
                t0 = time.monotonic()
                cold = report(
                    "cold (loads model)", run_with_progress(client, audio), time.monotonic() - t0
                )
                for i in (1, 2):
                    t0 = time.monotonic()
                    status = client.runsync(ENDPOINT, {"audio": audio})
                    report(f"warm runsync #{i}   ", status, time.monotonic() - t0)
            print(f"\nTranscript: {cold['text'].strip()}")
            for seg in cold["segments"]:
                print(f"  [{seg['start']:5.2f} - {seg['end']:5.2f}] {seg['text'].strip()}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
