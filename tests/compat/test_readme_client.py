"""The README's two snippets, run as written: its handler file served by anypod, and its
``runpod`` client snippet (only the server address changed) calling it (issue 8, item 16c)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import runpod

from tests.conftest import ROOT, Served

README = (ROOT / "README.md").read_text()
SNIPPETS: list[str] = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def snippet(marker: str) -> str:
    found = [s for s in SNIPPETS if marker in s]
    assert len(found) == 1, f"README: one python snippet with {marker!r} expected"
    return found[0]


def test_the_readme_client_snippet_calls_the_readme_handler(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    handler = tmp_path / "handler.py"
    handler.write_text(snippet("# handler.py"))
    served = serve(str(handler))
    client = snippet("runpod.endpoint_url_base").replace("http://127.0.0.1:8000", served.url)
    out = subprocess.run(
        [sys.executable, "-c", client],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.strip() == "{'greeting': 'hello Ada'}"


def test_the_runpod_client_refuses_to_start_without_an_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why the README sets ``runpod.api_key``: a base URL alone is not enough."""
    monkeypatch.setattr(runpod, "api_key", None)
    with pytest.raises(RuntimeError):
        runpod.Endpoint("handler")
