"""The main job: the Whisper endpoint served by ``anypod serve``, driven over HTTP."""

from __future__ import annotations

import base64
import string
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_status

pytest.importorskip("faster_whisper", reason="needs the [whisper] extra")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper"
B64 = base64.b64encode((EXAMPLE / "speech.wav").read_bytes()).decode()
EXPECTED_WORDS = {"quick", "brown", "fox", "lazy", "dog", "machines"}


def words(text: str) -> set[str]:
    return set(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def test_whisper_over_http_all_forms(serve: Any) -> None:
    s = serve(str(EXAMPLE / "whisper.py"), env={"HF_HUB_OFFLINE": "1"})
    url = f"{s.url}/v2/whisper"
    flat = httpx.post(
        f"{url}/runsync", json={"input": {"audio": B64, "language": "en"}}, timeout=120
    ).json()
    assert flat["status"] == "COMPLETED", flat
    result = flat["output"][0]
    assert EXPECTED_WORDS <= words(result["text"])
    assert result["language"] == "en" and 5 < result["duration"] < 7
    starts = [seg["start"] for seg in result["segments"]]
    assert starts == sorted(starts) and len(starts) >= 1

    runpod_form = {
        "engine": "faster-whisper",
        "model": "tiny.en",
        "transcribe_args": {"blob": B64, "word_timestamps": True},
    }
    rp = httpx.post(f"{url}/runsync", json={"input": runpod_form}, timeout=120).json()
    assert rp["status"] == "COMPLETED" and EXPECTED_WORDS <= words(rp["output"][0]["text"])
    assert rp["output"][0]["segments"][0]["words"]

    bad = httpx.post(
        f"{url}/runsync", json={"input": {"audio": "!!not base64!!"}}, timeout=60
    ).json()
    assert bad["status"] == "FAILED" and "audio" in bad["error"]


def test_whisper_streams_segments(serve: Any) -> None:
    s = serve(str(EXAMPLE / "whisper.py"), env={"HF_HUB_OFFLINE": "1"})
    url = f"{s.url}/v2/whisper"
    job = httpx.post(f"{url}/run", json={"input": {"audio": B64, "stream": True}}).json()
    segments: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        reply = httpx.get(f"{url}/stream/{job['id']}?wait=5000", timeout=30).json()
        segments += [item["output"] for item in reply["stream"]]
        if reply["status"] == "COMPLETED" and not reply["stream"]:
            break
    assert len(segments) >= 2
    assert EXPECTED_WORDS <= words(" ".join(seg["text"] for seg in segments))
    done = wait_status(s.url, "whisper", job["id"], {"COMPLETED"})
    assert len(done["output"]) == len(segments)
