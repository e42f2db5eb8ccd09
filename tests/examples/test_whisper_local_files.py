"""The Whisper example reads local files only under WHISPER_LOCAL_FILES_DIR (issue 8, item 16d).

Without it, ``{"audio": "/etc/passwd"}`` is refused before anything is opened, with the same
error whether the file exists or not. No model is loaded: audio is resolved before Whisper runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper"
CLIP = EXAMPLE / "speech.wav"
RUNPOD = {"engine": "faster-whisper"}
EXISTING, MISSING = "/etc/passwd", "/etc/no-such-file-here"


@pytest.fixture(scope="module")
def whisper() -> Iterator[ModuleType]:
    name = "anypod_example_whisper_local_files"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / "whisper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(autouse=True)
def _no_model(whisper: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("the model must not be reached")

    monkeypatch.setattr(whisper, "get_model", refuse)
    monkeypatch.delenv("WHISPER_LOCAL_FILES_DIR", raising=False)
    monkeypatch.delenv("WHISPER_ALLOW_LOCAL_FILES", raising=False)


def error(whisper: ModuleType, inp: dict[str, Any]) -> str:
    out = list(whisper.handler({"id": "job-1", "input": inp}))
    assert len(out) == 1 and set(out[0]) == {"error"}, out
    message: str = out[0]["error"]
    return message


def opened(whisper: ModuleType, inp: dict[str, Any]) -> Any:
    with ExitStack() as stack:
        return whisper.open_audio(whisper.parse_request(inp), stack)


def forms(path: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("audio", {"audio": path}),
        ("audio", {"audio": Path(path).as_uri()}),
        ("transcribe_args.url", {**RUNPOD, "transcribe_args": {"url": path}}),
        ("transcribe_args.url", {**RUNPOD, "transcribe_args": {"url": Path(path).as_uri()}}),
    ]


@pytest.mark.parametrize("index", range(4))
def test_by_default_no_local_path_is_opened_or_even_looked_at(
    whisper: ModuleType, monkeypatch: pytest.MonkeyPatch, index: int
) -> None:
    looked: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            looked.append(f"{name}({path})")
            return real(path, *args, **kwargs)

        return call

    for module, name in ((os.path, "isfile"), (os.path, "realpath"), (os, "stat")):
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    monkeypatch.setattr("builtins.open", spy("open", open))
    messages = set()
    for path in (EXISTING, MISSING, str(CLIP)):
        field, inp = forms(path)[index]
        message = error(whisper, inp)
        assert message.startswith(f"{field}: local files are disabled"), message
        assert "WHISPER_LOCAL_FILES_DIR" in message
        messages.add(message)
    assert len(messages) == 1  # the same answer whether the file exists or not
    assert looked == []


def test_a_relative_path_or_dots_are_refused_too(whisper: ModuleType) -> None:
    for path in ("speech.wav", "../../etc/passwd", "~/.ssh/id_rsa", "C:\\audio.wav"):
        assert "local files are disabled" in error(whisper, {"audio": path}), path


def test_base64_is_still_base64(whisper: ModuleType) -> None:
    assert opened(whisper, {"audio": "//uQxAAA"}).read() == b"\xff\xfb\x90\xc4\x00\x00"


def test_files_under_the_allowed_directory_are_read(
    whisper: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHISPER_LOCAL_FILES_DIR", str(EXAMPLE))
    for _, inp in forms(str(CLIP)):
        assert opened(whisper, inp) == str(CLIP), inp
    assert opened(whisper, {"audio": "speech.wav"}) == str(CLIP)  # relative to the directory


def test_paths_outside_the_allowed_directory_get_one_answer(
    whisper: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WHISPER_LOCAL_FILES_DIR", str(tmp_path))
    (tmp_path / "link.wav").symlink_to(CLIP)  # leads out of the directory
    for index in range(4):
        messages = set()
        for path in (EXISTING, MISSING, str(CLIP), str(tmp_path / "link.wav")):
            field, inp = forms(path)[index]
            message = error(whisper, inp)
            assert message == f"{field}: local files must lie under WHISPER_LOCAL_FILES_DIR"
            messages.add(message)
        assert len(messages) == 1
    for path in ("../../../../../../etc/passwd", "link.wav"):
        assert "must lie under" in error(whisper, {"audio": path}), path


def test_a_missing_file_under_the_allowed_directory_is_named(
    whisper: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WHISPER_LOCAL_FILES_DIR", str(tmp_path))
    message = error(whisper, {"audio": str(tmp_path / "gone.wav")})
    assert message.startswith("audio: no such file"), message
