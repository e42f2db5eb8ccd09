"""Each example serves an endpoint named after it by default (issue 8, item 16b): the endpoint
name is the handler file's stem, so the files are ``whisper.py`` and ``embeddings.py``."""

from __future__ import annotations

import importlib.util

import pytest

from anypod import endpoints as eps
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["whisper", "embeddings"])
def test_an_example_is_served_as_an_endpoint_named_after_it(name: str) -> None:
    handler = ROOT / "examples" / name / f"{name}.py"
    assert handler.is_file()
    assert eps.name_for_handler(str(handler)) == name
    assert not (handler.parent / "handler.py").exists()


@pytest.mark.parametrize("name", ["whisper", "embeddings"])
def test_an_example_file_shadows_no_installed_module(name: str) -> None:
    """The loader (like ``python whisper.py``) puts the file's directory first on sys.path, so an
    installed top-level module of the same name would be hidden by the example."""
    assert importlib.util.find_spec(name) is None
