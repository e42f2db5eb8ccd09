"""Batch handlers: declaration (``@anypod.batch``) and the bucketing policy, pure.

A batch handler takes a list of jobs and returns a list of results in the same order. Jobs are
grouped into buckets by the values of ``bucket`` input fields (a batch never mixes buckets);
a bucket is released when it holds ``max_size`` jobs, or ``max_wait_ms`` after its first job
arrived. Released buckets leave oldest-first, so a rare bucket is never starved by a busy one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from anypod import errors, types

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__anypod_batch__"


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    max_size: int = 8
    max_wait_ms: float = 40.0
    bucket: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise errors.ConfigError(f"batch max_size must be >= 1, got {self.max_size}")
        if self.max_wait_ms < 0:
            raise errors.ConfigError(f"batch max_wait_ms must be >= 0, got {self.max_wait_ms}")

    def key(self, job_input: Any) -> bytes:
        """The bucket of a job: its values of the ``bucket`` fields, encoded."""
        if not self.bucket or not isinstance(job_input, dict):
            return b""
        return orjson.dumps([job_input.get(name) for name in self.bucket])

    def with_overrides(self, size: int | None, wait_ms: float | None) -> BatchSpec:
        return dataclasses.replace(
            self,
            max_size=self.max_size if size is None else size,
            max_wait_ms=self.max_wait_ms if wait_ms is None else wait_ms,
        )


def batch(
    *, max_size: int = 8, max_wait_ms: float = 40.0, bucket: Sequence[str] = ()
) -> Callable[[F], F]:
    """Declare ``handler(jobs: list[dict]) -> list[result]`` a batch handler.

    ``BATCH_SIZE`` and ``BATCH_TIMEOUT_MS`` in the worker's environment override the numbers.
    """
    spec = BatchSpec(max_size=max_size, max_wait_ms=max_wait_ms, bucket=tuple(bucket))

    def mark(handler: F) -> F:
        setattr(handler, ATTRIBUTE, spec)
        return handler

    return mark


def spec_of(handler: Callable[..., Any], config: Mapping[str, Any]) -> BatchSpec | None:
    """A handler's batch spec, from the decorator or a ``"batch": {...}`` start() config."""
    declared = getattr(handler, ATTRIBUTE, None)
    if isinstance(declared, BatchSpec):
        return declared
    raw = config.get("batch")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise errors.ConfigError("start() config 'batch' must be a dict")
    return BatchSpec(
        max_size=int(raw.get("max_size", 8)),
        max_wait_ms=float(raw.get("max_wait_ms", 40)),
        bucket=tuple(raw.get("bucket", ())),
    )


@dataclasses.dataclass
class Bucket:
    key: bytes
    first_at: float
    jobs: list[types.JSONDict] = dataclasses.field(default_factory=list)


class Buckets:
    """Jobs waiting to form batches. Time is passed in; nothing here sleeps."""

    def __init__(self, spec: BatchSpec) -> None:
        self.spec = spec
        self._buckets: dict[bytes, Bucket] = {}

    def __len__(self) -> int:
        return sum(len(b.jobs) for b in self._buckets.values())

    def add(self, job: types.JSONDict, now: float) -> None:
        key = self.spec.key(job.get("input"))
        bucket = self._buckets.setdefault(key, Bucket(key, now))
        bucket.jobs.append(job)

    def discard(self, job_id: str) -> bool:
        for key, bucket in list(self._buckets.items()):
            kept = [j for j in bucket.jobs if j["id"] != job_id]
            if len(kept) != len(bucket.jobs):
                bucket.jobs = kept
                if not kept:
                    del self._buckets[key]
                return True
        return False

    def release(
        self, now: float, *, flush: bool = False, limit: int | None = None
    ) -> list[list[types.JSONDict]]:
        """Batches due now (full, past max wait, or every one with ``flush``), oldest first;
        at most ``limit`` of them (the rest keep filling)."""
        due = sorted(
            (
                b
                for b in self._buckets.values()
                if flush or len(b.jobs) >= self.spec.max_size or now >= self._deadline(b)
            ),
            key=lambda b: b.first_at,
        )[:limit]
        batches = []
        for bucket in due:
            batches.append(bucket.jobs[: self.spec.max_size])
            rest = bucket.jobs[self.spec.max_size :]
            if rest:  # the overflow has waited as long as the bucket: due at once next time
                self._buckets[bucket.key] = Bucket(bucket.key, bucket.first_at, rest)
            else:
                del self._buckets[bucket.key]
        return batches

    def next_deadline(self) -> float | None:
        return min((self._deadline(b) for b in self._buckets.values()), default=None)

    def _deadline(self, bucket: Bucket) -> float:
        return bucket.first_at + self.spec.max_wait_ms / 1000
