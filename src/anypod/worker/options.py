"""How one worker is configured: :class:`WorkerOptions`, which travels as JSON from the
supervisor of ``anypod serve`` to the ``python -m anypod.worker`` process it starts (on its
standard input, so the token never shows in ``ps`` or the environment)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from anypod import errors
from anypod.batching import BatchSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    server: str
    fallback_servers: tuple[str, ...] = ()  # replicas to fail over to when server is unreachable
    endpoint: str
    token: str = dataclasses.field(repr=False)  # a secret: never in a repr or log line
    handler: str
    worker_id: str
    concurrency: int = 1
    gpu: str | None = None
    ping_interval: float = 10.0
    stop_grace: float = 5.0
    shutdown_grace: float = 30.0
    result_retry_for: float = 300.0
    batch: BatchSpec | None = None  # declares a batch handler (endpoint config)
    batch_size: int | None = None  # overrides a batch handler's max_size (BATCH_SIZE)
    batch_wait_ms: float | None = None  # overrides its max_wait_ms (BATCH_TIMEOUT_MS)
    parent_pid: int | None = None  # an embedded worker dies with the server that started it

    @property
    def servers(self) -> tuple[str, ...]:
        return (self.server, *self.fallback_servers)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerOptions:
        try:
            data: dict[str, Any] = orjson.loads(raw)
            data["fallback_servers"] = tuple(data.get("fallback_servers", ()))
            batch = data.get("batch")
            if batch is not None:
                data["batch"] = BatchSpec(**{**batch, "bucket": tuple(batch.get("bucket", ()))})
            return cls(**data)
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            raise errors.ConfigError(f"bad worker options: {exc}") from exc
