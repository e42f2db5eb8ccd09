"""Loading handlers: files run as __main__ with start() captured; module:function; errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from anypod import errors
from anypod.worker import loader


@pytest.fixture(autouse=True)
def _restore_main() -> Iterator[None]:
    main, path = sys.modules["__main__"], list(sys.path)
    yield
    sys.modules["__main__"] = main
    sys.path[:] = path


def test_runpod_file_start_config_is_captured(tmp_path: Path) -> None:
    f = tmp_path / "h.py"
    f.write_text(
        "import runpod\n"
        "def handler(job):\n    return 1\n"
        "def other(job):\n    return 2\n"
        "if __name__ == '__main__':\n"
        "    runpod.serverless.start({'handler': handler, 'return_aggregate_stream': True,\n"
        "                             'concurrency_modifier': lambda n: 5})\n"
        "    raise SystemExit('start() must not return here')\n"
    )
    loaded = loader.load(str(f))
    assert loaded.handler({"id": "x"}) == 1
    assert loaded.config["return_aggregate_stream"] is True and loaded.concurrency(1) == 5
    assert loader.load(f"{f}:other").handler({}) == 2


def test_plain_file_and_generator_detection(tmp_path: Path) -> None:
    f = tmp_path / "gen.py"
    f.write_text("def handler(job):\n    yield 1\n")
    loaded = loader.load(str(f))
    assert loaded.is_generator and loaded.config == {} and loaded.batch is None


def test_module_function_spec() -> None:
    loaded = loader.load("json:dumps")
    assert loaded.handler([1]) == "[1]"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/nope/missing.py", "not found"),
        ("json", "module:function"),
        ("json:no_such_function", "no callable"),
    ],
)
def test_load_errors_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(errors.HandlerLoadError, match=message):
        loader.load(spec)


def test_anypod_serverless_start_hands_over_on_runpod(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpod

    from anypod import serverless

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(runpod.serverless, "start", seen.append)
    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", "https://api.runpod.ai/v2/x/job-take/$ID?")

    def handler(job: dict[str, object]) -> int:
        return 1

    serverless.start({"handler": handler})
    assert seen == [{"handler": handler}]
    with pytest.raises(errors.HandlerLoadError):
        serverless.start({"handler": "not callable"})
