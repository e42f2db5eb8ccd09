"""What a route handler gets: the request, its path parameters, the resolved caller, the
validated query and body, and the service."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from anypod.http.auth import Caller
from anypod.service import JobService

M = TypeVar("M", bound=BaseModel)


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    request: Request
    params: Mapping[str, str]
    caller: Caller
    service: JobService
    query: BaseModel | None = None
    body: BaseModel | None = None

    @property
    def endpoint(self) -> str:
        return self.params["endpoint"]

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model), f"the route declares query={model.__name__}"
        return self.query

    async def audit(
        self, action: str, target: str, detail: Mapping[str, object] | None = None
    ) -> None:
        """Record a security-relevant act of the caller in the audit log."""
        caller = self.caller
        await self.service.audit.record(
            action,
            actor=caller.key_id,
            tenant=caller.tenant,
            target=target,
            source=caller.source,
            detail=detail,
        )

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model), f"the route declares body={model.__name__}"
        return self.body
