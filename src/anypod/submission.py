"""Validate a ``/run`` or ``/runsync`` body into a :class:`jobs.NewJob`.

Errors name the offending field. Unknown top-level keys are dropped, as RunPod does.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

import orjson

from anypod import errors, jobs, types


@dataclasses.dataclass(frozen=True, kw_only=True)
class Defaults:
    """Endpoint-level defaults applied where a submission's ``policy`` is silent."""

    execution_timeout_ms: int = jobs.DEFAULT_EXECUTION_TIMEOUT_MS
    ttl_ms: int = jobs.DEFAULT_TTL_MS
    max_attempts: int = 3


def decode_body(body: bytes) -> types.JSONDict:
    """Decode a request body that must be a JSON object."""
    if not body.strip():
        raise errors.InvalidRequest("request body is empty; expected a JSON object", field="body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(value, dict):
        raise errors.InvalidRequest("request body must be a JSON object", field="body")
    return value


def parse(
    body: types.JSONDict,
    *,
    job_id: str,
    endpoint: str,
    now: float,
    retention_ms: int,
    defaults: Defaults,
    owner: str | None = None,
) -> jobs.NewJob:
    if "input" not in body:
        raise errors.InvalidRequest("'input' is required", field="input")
    if not isinstance(body["input"], dict):
        raise errors.InvalidRequest("'input' must be a JSON object", field="input")
    s3 = body.get("s3Config")
    if s3 is not None and not isinstance(s3, dict):
        raise errors.InvalidRequest("'s3Config' must be a JSON object", field="s3Config")
    return jobs.NewJob(
        id=job_id,
        endpoint=endpoint,
        input=orjson.dumps(body["input"]),
        policy=parse_policy(body.get("policy"), defaults),
        webhook=parse_webhook(body.get("webhook")),
        s3_config=orjson.dumps(s3) if s3 is not None else None,
        owner=owner,
        retention_ms=retention_ms,
        max_attempts=defaults.max_attempts,
        created_at=now,
    )


def parse_webhook(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidRequest("'webhook' must be a URL string", field="webhook")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidRequest("'webhook' must be an http(s) URL", field="webhook")
    return value


_POLICY_KEYS = {"executionTimeout", "ttl", "lowPriority"}


def parse_policy(value: Any, defaults: Defaults) -> jobs.Policy:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise errors.InvalidRequest("'policy' must be a JSON object", field="policy")
    unknown = sorted(set(value) - _POLICY_KEYS)
    if unknown:
        raise errors.InvalidRequest(
            f"unknown policy key {unknown[0]!r}; allowed: {sorted(_POLICY_KEYS)}",
            field=f"policy.{unknown[0]}",
        )
    low = value.get("lowPriority", False)
    if not isinstance(low, bool):
        raise errors.InvalidRequest("must be true or false", field="policy.lowPriority")
    return jobs.Policy(
        execution_timeout_ms=_milliseconds(
            value,
            "executionTimeout",
            defaults.execution_timeout_ms,
            jobs.MIN_EXECUTION_TIMEOUT_MS,
        ),
        ttl_ms=_milliseconds(value, "ttl", defaults.ttl_ms, jobs.MIN_TTL_MS),
        low_priority=low,
    )


def _milliseconds(policy: types.JSONDict, key: str, default: int, minimum: int) -> int:
    value = policy.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidRequest(
            "must be an integer number of milliseconds", field=f"policy.{key}"
        )
    if not minimum <= value <= jobs.MAX_POLICY_MS:
        raise errors.InvalidRequest(
            f"must be between {minimum} and {jobs.MAX_POLICY_MS} ms, got {value}",
            field=f"policy.{key}",
        )
    return value
