from __future__ import annotations

from typing import Any

import pytest

from anypod import batching, errors

Spec = batching.BatchSpec


def job(i: int, **inp: Any) -> dict[str, Any]:
    return {"id": f"j{i}", "input": inp}


def ids(batches: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[j["id"] for j in b] for b in batches]


def test_full_bucket_releases_at_once_and_buckets_never_mix() -> None:
    b = batching.Buckets(Spec(max_size=2, max_wait_ms=100, bucket=("w",)))
    b.add(job(1, w=512), 0.0)
    b.add(job(2, w=1024), 0.0)
    assert b.release(0.01) == []
    b.add(job(3, w=512), 0.02)
    assert ids(b.release(0.02)) == [["j1", "j3"]]
    assert len(b) == 1 and b.next_deadline() == pytest.approx(0.1)


def test_partial_bucket_waits_at_most_max_wait_and_oldest_goes_first() -> None:
    b = batching.Buckets(Spec(max_size=8, max_wait_ms=40, bucket=("k",)))
    b.add(job(1, k="busy"), 0.000)
    b.add(job(2, k="rare"), 0.010)
    b.add(job(3, k="busy"), 0.020)
    assert b.release(0.039) == []
    assert ids(b.release(0.041)) == [["j1", "j3"]]
    assert ids(b.release(0.051)) == [["j2"]]


def test_overflow_is_due_immediately_next_time() -> None:
    b = batching.Buckets(Spec(max_size=2, max_wait_ms=1000))
    for i in range(5):
        b.add(job(i), 0.0)
    assert ids(b.release(0.0)) == [["j0", "j1"]]
    assert ids(b.release(0.0)) == [["j2", "j3"]]
    assert ids(b.release(0.0, flush=True)) == [["j4"]]


def test_discard_and_keys() -> None:
    b = batching.Buckets(Spec(bucket=("a", "b")))
    b.add(job(1, a=1, b=2), 0.0)
    assert b.discard("j1") and not b.discard("j1") and len(b) == 0
    spec = Spec(bucket=("a",))
    assert spec.key({"a": 1, "z": 9}) == spec.key({"a": 1}) != spec.key({"a": 2})
    assert Spec().key({"anything": 1}) == b""


def test_declaration_by_decorator_or_config_and_overrides() -> None:
    @batching.batch(max_size=4, max_wait_ms=10, bucket=["w"])
    def handler(jobs: list[dict[str, Any]]) -> list[Any]:
        return jobs

    assert batching.spec_of(handler, {}) == Spec(max_size=4, max_wait_ms=10, bucket=("w",))
    assert batching.spec_of(len, {"batch": {"max_size": 3}}) == Spec(max_size=3)
    assert batching.spec_of(len, {}) is None
    assert Spec(max_size=4).with_overrides(16, None) == Spec(max_size=16)
    with pytest.raises(errors.ConfigError):
        Spec(max_size=0)
