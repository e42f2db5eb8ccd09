"""A validated ``/run`` or ``/runsync`` body (:class:`schemas.RunRequest`) as a
:class:`jobs.Submission`. Input is encoded once here and stays bytes from then on."""

from __future__ import annotations

from typing import Any

import orjson

from anypod import errors, jobs, types
from anypod.protocols.runpod import schemas

NO_POLICY = schemas.Policy()  # what a body without one means (read only)


def from_run(body: schemas.RunRequest) -> jobs.Submission:
    policy = body.policy or NO_POLICY
    return jobs.Submission(
        input=encode(body.input, "input"),
        execution_timeout_ms=policy.executionTimeout,
        ttl_ms=policy.ttl,
        low_priority=policy.lowPriority,
        webhook=body.webhook,
        s3_config=None if body.s3Config is None else encode(body.s3Config, "s3Config"),
    )


def encode(value: Any, field: str) -> types.RawJSON:
    """JSON bytes of a decoded value; integers must fit in 64 bits (no silent rounding)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise errors.InvalidRequest(f"cannot be stored as JSON: {exc}", field=field) from exc
