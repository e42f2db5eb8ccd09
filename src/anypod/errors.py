"""The one exception tree of anypod. Standard library only; the HTTP status of each class is in
:mod:`anypod.protocols.errors`, which the server answers with and the SDK raises from, so
``except errors.JobNotFound`` works on both sides of the wire.

AnypodError
├── InvalidRequest          bad input from a client or worker (names the field)
│   └── PayloadTooLarge     a body over the endpoint's limit
├── Unauthorized            missing or wrong API key / worker token
├── NotFound
│   ├── EndpointNotFound
│   └── JobNotFound
├── Conflict                the job is in a state that does not allow the operation
├── StoreUnavailable        the database cannot be reached right now (retry later)
├── SchemaMismatch          the database schema is not the one this version expects
├── ConfigError             a settings or endpoint file is wrong
├── HandlerLoadError        the worker could not load the user's handler
├── ClientError             the SDK got an error reply (what it raises for a reply that a
│                           class above stands for is that class and a ClientError)
└── Unreachable             the SDK could not reach the server

An error the SDK raised from a reply carries the reply's ``status_code`` and decoded ``body``;
raised anywhere else, both are None.
"""

from __future__ import annotations

from typing import Any


def shown(value: str, most: int = 80) -> str:
    """``repr(value)``, cut to ``most`` characters: what a message may echo of its input."""
    text = repr(value)
    return text if len(text) <= most else f"{text[: most - 4]}...'"


class AnypodError(Exception):
    """An anypod error."""

    status_code: int | None = None
    body: Any = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidRequest(AnypodError):
    """The request is malformed."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than allowed."""


class Unauthorized(AnypodError):
    """Missing or invalid credentials."""


class Forbidden(AnypodError):
    """The credential is valid but may not do this (a scope it lacks)."""


class RateLimited(AnypodError):
    """Over a limit of the key (rate, concurrency or quota); retry after ``retry_after`` s.

    ``limit`` names the limit; ``headers`` are the IETF ``RateLimit``/``RateLimit-Policy``
    fields and ``Retry-After`` to answer with."""

    def __init__(
        self,
        message: str | None = None,
        *,
        limit: str = "rate",
        retry_after: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after
        self.headers = headers or {}


class NotFound(AnypodError):
    """Not found."""


class EndpointNotFound(NotFound):
    """No such endpoint."""


class JobNotFound(NotFound):
    """No such job (it may have been purged after its retention window)."""


class Conflict(AnypodError):
    """The job's state does not allow this operation."""


class StoreUnavailable(AnypodError):
    """The job store is unavailable; retry shortly."""


class SchemaMismatch(AnypodError):
    """The database schema does not match this version of anypod."""


class ConfigError(AnypodError):
    """Invalid configuration."""


class HandlerLoadError(AnypodError):
    """The handler could not be loaded."""


class ClientError(AnypodError):
    """The server answered with an error."""

    def __init__(
        self, message: str | None = None, *, status_code: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class Unreachable(AnypodError):
    """The server could not be reached."""
