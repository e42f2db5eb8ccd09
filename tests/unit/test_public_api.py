"""What ``import anypod`` promises, and what a handler process must not import."""

from __future__ import annotations

import subprocess
import sys

import anypod


def test_the_public_api_is_exactly_this() -> None:
    assert anypod.__all__ == [
        "AsyncClient",
        "Client",
        "JobStatus",
        "batch",
        "errors",
        "progress",
        "serverless",
    ]
    for name in anypod.__all__:
        assert getattr(anypod, name) is not None, name


def test_a_handler_process_imports_no_http_stack() -> None:
    """The worker's child imports ``anypod.worker.child``: it must stay light, it starts on
    every crash and refresh."""
    probe = (
        "import sys, anypod.worker.child, anypod; anypod.progress;"
        "print(sorted(m for m in ('httpx', 'aiohttp', 'pydantic', 'starlette', 'uvicorn',"
        " 'anypod.client', 'anypod.http') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
