"""Worker options travel as JSON from the supervisor to ``python -m anypod.worker``."""

from __future__ import annotations

import pytest

from anypod import errors
from anypod.batching import BatchSpec
from anypod.worker.options import WorkerOptions


def test_options_survive_the_trip() -> None:
    options = WorkerOptions(
        server="http://127.0.0.1:1",
        fallback_servers=("http://b:2",),
        endpoint="ep",
        token="apw_x",
        handler="h.py:fn",
        worker_id="ep-1",
        concurrency=4,
        batch=BatchSpec(max_size=3, max_wait_ms=10, bucket=("w", "h")),
        batch_size=2,
    )
    assert WorkerOptions.from_json(options.to_json()) == options
    assert options.servers == ("http://127.0.0.1:1", "http://b:2")


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"server": "x"}', b'{"nope": 1}'])
def test_bad_options_are_a_config_error(raw: bytes) -> None:
    with pytest.raises(errors.ConfigError):
        WorkerOptions.from_json(raw)
