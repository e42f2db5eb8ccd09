"""Who is calling: the credential of a request resolved once, by the route's :class:`Auth`,
into a :class:`Caller` that handlers receive.

Client routes take an API key (``Authorization: Bearer <key>`` or the bare key, as RunPod
accepts both); when no keys are configured (development mode) anyone may call them. Worker
routes take the endpoint's worker token, and grant nothing on client routes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection

from starlette.requests import Request

from anypod import errors
from anypod.http.routing import Auth
from anypod.service import JobService


@dataclasses.dataclass(frozen=True, kw_only=True)
class Caller:
    auth: Auth
    key_id: str | None = None  # a stable, non-secret id of the credential; a job's owner
    tenant: str | None = None  # whose jobs these are (filled in by managed keys)
    scopes: frozenset[str] = frozenset()
    endpoint: str | None = None  # for a worker: the endpoint its token serves


ANONYMOUS = Caller(auth=Auth.NONE)
CLIENT_SCOPES = frozenset({"run", "read", "cancel"})


def credential(request: Request) -> str | None:
    """``Authorization: Bearer <key>`` or the bare key (read off the raw ASGI headers: this
    runs on every request)."""
    for name, raw in request.scope["headers"]:
        if name == b"authorization":
            value = raw.decode("latin-1").strip()
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            return value or None
    return None


def key_id(secret: str, kind: str = "key") -> str:
    return f"{kind}-{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


OPEN_CLIENT = Caller(auth=Auth.CLIENT, scopes=CLIENT_SCOPES)  # no key, none configured
MAX_CALLERS = 4096  # callers remembered per credential (a hash each time is hot-path CPU)


class Authenticator:
    def __init__(self, service: JobService, api_keys: Collection[str]) -> None:
        self.service = service
        self.api_keys = frozenset(api_keys)
        self._callers: dict[tuple[str, str | None], Caller] = {}

    async def resolve(self, auth: Auth, request: Request, endpoint: str | None) -> Caller:
        if auth is Auth.NONE:
            return ANONYMOUS
        secret = credential(request)
        if auth is Auth.WORKER:
            assert endpoint is not None, "worker routes have an {endpoint} parameter"
            await self.service.authenticate_worker(endpoint, secret)  # checked on every call
            return self._caller(secret or "", endpoint)
        if self.api_keys and secret not in self.api_keys:
            raise errors.Unauthorized("missing or invalid API key (Authorization: Bearer <key>)")
        return OPEN_CLIENT if secret is None else self._caller(secret, None)

    def _caller(self, secret: str, endpoint: str | None) -> Caller:
        """The caller a valid credential stands for, made once."""
        found = self._callers.get((secret, endpoint))
        if found is None:
            if len(self._callers) >= MAX_CALLERS:
                self._callers.clear()
            if endpoint is None:
                found = Caller(auth=Auth.CLIENT, key_id=key_id(secret), scopes=CLIENT_SCOPES)
            else:
                found = Caller(auth=Auth.WORKER, key_id=key_id(secret, "worker"), endpoint=endpoint)
            self._callers[(secret, endpoint)] = found
        return found
