from __future__ import annotations

from typing import Any

import orjson
import pytest

from anypod import errors, submission


def parse(body: dict[str, Any]) -> Any:
    return submission.parse(
        body, job_id="x", endpoint="e", now=100.0, retention_ms=1000, defaults=submission.Defaults()
    )


def test_valid_body_with_everything() -> None:
    new = parse(
        {
            "input": {"a": 1},
            "webhook": "https://h/cb",
            "s3Config": {"bucketName": "b"},
            "policy": {"executionTimeout": 5000, "ttl": 20_000, "lowPriority": True},
            "unknownTopLevel": "dropped",
        }
    )
    assert orjson.loads(new.input) == {"a": 1} and new.webhook == "https://h/cb"
    assert new.policy.execution_timeout_ms == 5000 and new.policy.low_priority
    assert new.priority < 0 and new.expires_at == 120.0
    assert orjson.loads(new.s3_config) == {"bucketName": "b"}


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
        ({"input": {}, "policy": {"executionTimeout": 1000}}, "policy.executionTimeout"),
        ({"input": {}, "policy": {"executionTimeout": True}}, "policy.executionTimeout"),
        ({"input": {}, "policy": {"lowPriority": "yes"}}, "policy.lowPriority"),
        ({"input": {}, "policy": {"priority": 1}}, "policy.priority"),
        ({"input": {}, "s3Config": "x"}, "s3Config"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(body)
    assert caught.value.field == field


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b"[1,2]", b'"s"', b"null"])
def test_decode_body_rejects_non_objects(raw: bytes) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        submission.decode_body(raw)
    assert caught.value.field == "body"
