"""The closed set of messages between the worker parent and the child running user code."""

from __future__ import annotations

import dataclasses

from anypod import types
from anypod.batching import BatchSpec

# parent -> child


@dataclasses.dataclass(frozen=True)
class RunJob:
    job: types.JSONDict


@dataclasses.dataclass(frozen=True)
class RunBatch:
    """Jobs for a batch handler, called once with all of them (one bucket)."""

    jobs: list[types.JSONDict]


@dataclasses.dataclass(frozen=True)
class CancelJob:
    job_id: str


@dataclasses.dataclass(frozen=True)
class Shutdown:
    pass


# child -> parent


@dataclasses.dataclass(frozen=True)
class Ready:
    concurrency: int
    is_generator: bool
    batch: BatchSpec | None = None


@dataclasses.dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclasses.dataclass(frozen=True)
class Progress:
    job_id: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class Chunk:
    job_id: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class Done:
    """The job's ``job-done`` body; ``body`` None means it was stopped and posts nothing."""

    job_id: str
    body: bytes | None
    is_stream: bool = False
    refresh: bool = False


@dataclasses.dataclass(frozen=True)
class Concurrency:
    value: int


@dataclasses.dataclass(frozen=True)
class Exited:
    """Made by the parent when the child's pipe closes."""

    exitcode: int | None


ToChild = RunJob | RunBatch | CancelJob | Shutdown
FromChild = Ready | LoadFailed | Progress | Chunk | Done | Concurrency | Exited
