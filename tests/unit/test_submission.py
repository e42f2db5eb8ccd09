"""RunPod's ``/run`` body: validated by its schema, turned into a domain submission."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from anypod import errors, jobs
from anypod.endpoints import Defaults
from anypod.http import requests
from anypod.protocols.runpod import schemas, submission


def parse(body: Any) -> jobs.Submission:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return submission.from_run(requests.body(schemas.RunRequest, raw))


def test_valid_body_with_everything() -> None:
    sub = parse(
        {
            "input": {"a": 1},
            "webhook": "https://h/cb",
            "s3Config": {"bucketName": "b"},
            "policy": {"executionTimeout": 5000, "ttl": 20_000, "lowPriority": True},
        }
    )
    assert orjson.loads(sub.input) == {"a": 1} and sub.webhook == "https://h/cb"
    policy = Defaults().policy(sub)
    assert policy.execution_timeout_ms == 5000 and policy.low_priority and policy.ttl_ms == 20_000
    assert sub.s3_config is not None and orjson.loads(sub.s3_config) == {"bucketName": "b"}


def test_silent_policy_takes_the_endpoints_defaults() -> None:
    sub = parse({"input": {}, "webhook": ""})
    assert sub.webhook is None
    policy = Defaults(execution_timeout_ms=7000, ttl_ms=60_000).policy(sub)
    assert (policy.execution_timeout_ms, policy.ttl_ms) == (7000, 60_000)
    assert not policy.low_priority


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "input"),
        ({"input": [1]}, "input"),
        ({"input": "text"}, "input"),
        ({"input": {}, "webhook": 3}, "webhook"),
        ({"input": {}, "webhook": "ftp://x"}, "webhook"),
        ({"input": {}, "policy": []}, "policy"),
        ({"input": {}, "policy": {"ttl": "10"}}, "policy.ttl"),
        ({"input": {}, "policy": {"ttl": 5}}, "policy.ttl"),
        ({"input": {}, "policy": {"ttl": 10_000.5}}, "policy.ttl"),
        ({"input": {}, "policy": {"executionTimeout": 1000}}, "policy.executionTimeout"),
        ({"input": {}, "policy": {"executionTimeout": True}}, "policy.executionTimeout"),
        ({"input": {}, "policy": {"lowPriority": "yes"}}, "policy.lowPriority"),
        ({"input": {}, "policy": {"priority": 1}}, "policy.priority"),
        ({"input": {}, "s3Config": "x"}, "s3Config"),
    ],
)
def test_bad_bodies_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"  ",
        b"{",
        b"[1,2]",
        b'"s"',
        b"null",
        b"[" * 5000 + b"]" * 5000,
        b'{"input": {"x": 1e999}}',  # infinity: not JSON, not silently null
        b'{"input": {"x": "\\ud800"}}',  # a lone surrogate
    ],
)
def test_decode_rejects_non_objects(raw: bytes) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(raw)
    assert caught.value.field == "body"
