"""Endpoint declarations: from a handler path, ``--endpoint`` names, or an ``anypod.toml``.

```toml
[endpoints.whisper]
handler = "examples/whisper/whisper.py"
workers = 1
concurrency = 1
batch = {max_size = 8, max_wait_ms = 40, bucket = ["language"]}  # optional: a batch handler
execution_timeout_ms = 600000
ttl_ms = 86400000
max_attempts = 3
webhook_secret = "whsec_..."  # optional: signs this endpoint's webhooks (Standard Webhooks)
```
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from anypod import batching, errors, jobs, webhook_signing

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Defaults:
    """Endpoint-level defaults applied where a submission is silent."""

    execution_timeout_ms: int = jobs.DEFAULT_EXECUTION_TIMEOUT_MS
    ttl_ms: int = jobs.DEFAULT_TTL_MS
    max_attempts: int = 3

    def policy(self, submission: jobs.Submission) -> jobs.Policy:
        timeout, ttl = submission.execution_timeout_ms, submission.ttl_ms
        return jobs.Policy(
            execution_timeout_ms=self.execution_timeout_ms if timeout is None else timeout,
            ttl_ms=self.ttl_ms if ttl is None else ttl,
            low_priority=submission.low_priority,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoint:
    name: str
    handler: str | None = None
    workers: int = 1
    concurrency: int = 1
    batch: batching.BatchSpec | None = None
    defaults: Defaults = dataclasses.field(default_factory=Defaults)
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)  # signs its webhooks


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise errors.ConfigError(
            f"invalid endpoint name {name!r}: use letters, digits, '_', '-', '.' (max 64)"
        )
    return name


def name_for_handler(spec: str) -> str:
    """``examples/whisper/whisper.py[:fn]`` → ``whisper``; ``pkg.mod:fn`` → ``mod``."""
    target = spec.split(":", 1)[0]
    if target.endswith(".py"):
        return check_name(Path(target).stem)
    return check_name(target.rsplit(".", 1)[-1])


def load_config(path: str | Path) -> list[Endpoint]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise errors.ConfigError(f"cannot read config {path}: {exc}") from exc
    table = data.get("endpoints")
    if not isinstance(table, dict) or not table:
        raise errors.ConfigError(f"{path}: no [endpoints.NAME] tables")
    return [_endpoint(check_name(name), spec, path) for name, spec in table.items()]


_FIELDS = {
    "handler",
    "workers",
    "concurrency",
    "execution_timeout_ms",
    "ttl_ms",
    "max_attempts",
    "batch",
    "webhook_secret",
}


def _endpoint(name: str, spec: Any, path: str | Path) -> Endpoint:
    if not isinstance(spec, dict):
        raise errors.ConfigError(f"{path}: [endpoints.{name}] must be a table")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise errors.ConfigError(f"{path}: endpoints.{name}: unknown key {unknown[0]!r}")
    defaults = Defaults(
        execution_timeout_ms=int(spec.get("execution_timeout_ms", 600_000)),
        ttl_ms=int(spec.get("ttl_ms", 86_400_000)),
        max_attempts=int(spec.get("max_attempts", 3)),
    )
    return Endpoint(
        name=name,
        batch=_batch(spec.get("batch"), name, path),
        handler=spec.get("handler"),
        workers=int(spec.get("workers", 1)),
        concurrency=int(spec.get("concurrency", 1)),
        defaults=defaults,
        webhook_secret=_webhook_secret(spec.get("webhook_secret"), name, path),
    )


def _webhook_secret(raw: Any, name: str, path: str | Path) -> str | None:
    """``webhook_secret = "whsec_<base64>"``: signs this endpoint's webhooks (over
    ``ANYPOD_WEBHOOK_SECRET``); checked now, so a bad one refuses to start."""
    if raw is None:
        return None
    source = f"{path}: endpoints.{name}.webhook_secret"
    if not isinstance(raw, str):
        raise errors.ConfigError(f"{source} must be a string")
    webhook_signing.key(raw, source=source)
    return raw


def _batch(raw: Any, name: str, path: str | Path) -> batching.BatchSpec | None:
    """``batch = {max_size = 8, max_wait_ms = 40, bucket = ["width", "height"]}``."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"max_size", "max_wait_ms", "bucket"}:
        raise errors.ConfigError(
            f"{path}: endpoints.{name}.batch must be a table of max_size, max_wait_ms, bucket"
        )
    return batching.BatchSpec(
        max_size=int(raw.get("max_size", 8)),
        max_wait_ms=float(raw.get("max_wait_ms", 40)),
        bucket=tuple(raw.get("bucket", ())),
    )
