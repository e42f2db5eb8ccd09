"""anypod's worker builds job-done bodies exactly as runpod.serverless does."""

from __future__ import annotations

import json

import orjson

from anypod.protocols.runpod import results


def test_return_values_follow_runpod() -> None:
    assert results.returned({"a": 1}) == {"output": {"a": 1}}
    assert results.returned({"error": "bad"}) == {"error": "bad"}
    assert results.returned({"error": "bad", "partial": 1}) == {
        "output": {"partial": 1},
        "error": "bad",
    }
    assert results.returned({}) == {}
    assert results.returned(None) == {"output": None}
    assert results.returned([1, 2]) == {"output": [1, 2]}
    assert results.returned({"x": 1, "refresh_worker": True}) == {
        "output": {"x": 1},
        "stopPod": True,
    }
    assert results.returned("s", refresh_worker=True) == {"output": "s", "stopPod": True}


def test_raised_error_is_runpods_json_string() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        body = results.raised(exc, worker_id="w1")
    doc = json.loads(body["error"])
    assert doc["error_type"] == "<class 'ValueError'>" and doc["error_message"] == "boom"
    assert "Traceback" in doc["error_traceback"] and doc["worker_id"] == "w1"


def test_generator_rules() -> None:
    assert results.yielded_error({"error": "x"}) == "x"
    assert results.yielded_error({"error": ""}) is None
    assert results.generator_done([1, 2], aggregate=True, refresh_worker=False) == {
        "output": [1, 2]
    }
    assert results.generator_done([1, 2], aggregate=False, refresh_worker=True) == {
        "output": [],
        "stopPod": True,
    }


def test_unserialisable_output_fails_instead_of_vanishing() -> None:
    body = orjson.loads(results.encode({"output": object()}))
    assert "not JSON-serialisable" in body["error"]
    assert orjson.loads(results.encode({"output": (1, 2)})) == {"output": [1, 2]}
